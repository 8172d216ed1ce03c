"""The hub loader fails fast offline and names the command that fetches the model."""

import time

import pytest

from dino_mx.models import load_pretrained_model


def test_offline_hub_name_fails_at_once_with_the_hf_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    start = time.perf_counter()
    with pytest.raises(OSError) as err:
        load_pretrained_model("facebook/dinov2-small")
    assert time.perf_counter() - start < 10  # no minute of retries
    message = str(err.value)
    assert "hf download facebook/dinov2-small --local-dir DIR" in message
    assert "huggingface-cli" not in message  # current huggingface_hub no longer ships it
    assert "model.pretrained=DIR" in message and "\n" not in message
