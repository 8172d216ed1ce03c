"""NetworkSpec: exactly one network, a known baseline, a checkpoint's model fixed; checked when
the spec is made, before anything is loaded."""

from __future__ import annotations

from typing import Any

import pytest

from dino_mx.eval.network import NetworkSpec


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ckpt": "runs/pn", "model": "vit_micro"}, {"model": "vit_micro", "baseline": "pixels"}],
)
def test_a_spec_names_exactly_one_network(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="name exactly one of ckpt, model or baseline"):
        NetworkSpec(**kwargs)


def test_an_unknown_baseline_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown baseline 'noise'; valid choices: pixels"):
        NetworkSpec(baseline="noise")


def test_a_checkpoint_fixes_its_model_a_preset_takes_model_overrides() -> None:
    for override in ("model.depth=3", "+model.extra=1", "~model.pretrained"):
        with pytest.raises(ValueError, match="the checkpoint fixes the model"):
            NetworkSpec(ckpt="runs/pn", overrides=[override])
    spec = NetworkSpec(model="vit_micro", overrides=["model.depth=3"])
    assert spec.overrides == ("model.depth=3",)  # a list becomes a tuple: the spec is hashable
    assert spec == NetworkSpec(model="vit_micro", overrides=("model.depth=3",))
    assert len({spec, NetworkSpec(model="vit_micro", overrides=["model.depth=3"])}) == 1
    assert NetworkSpec(ckpt="runs/pn", overrides=["data.size=64"]).which == "teacher"
