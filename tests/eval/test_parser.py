"""Help texts of ``dino-mx eval`` and ``dino-mx visualize``: whole sentences, every option; the
network options alike in every command and read back as one NetworkSpec."""

from __future__ import annotations

import argparse

import pytest

from dino_mx.cli import main as dino_mx_main
from dino_mx.eval.network import NetworkSpec
from dino_mx.eval.parser import build_parser, build_visualize_parser, network_spec


def _parsers() -> dict[str, argparse.ArgumentParser]:
    eval_parser = build_parser()
    sub = next(a for a in eval_parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        "eval": eval_parser,
        **{f"eval {name}": p for name, p in sub.choices.items()},
        "visualize": build_visualize_parser(),
    }


def test_the_commands_are_all_there() -> None:
    assert set(_parsers()) == {"eval", "eval knn", "eval linear", "eval localize", "visualize"}


@pytest.mark.parametrize("name", sorted(_parsers()))
def test_description_is_whole_and_every_option_is_explained(name: str) -> None:
    parser = _parsers()[name]
    text = " ".join(parser.format_help().split())
    paragraphs = [p for p in (parser.description or "").split("\n\n") if p]
    assert paragraphs, f"{name} has no description"
    prose = [p for p in paragraphs if not p.startswith("examples:")]
    for paragraph in prose:
        assert paragraph.rstrip().endswith("."), f"{name}: cut mid-sentence: {paragraph[-40:]!r}"
        assert " ".join(paragraph.split()) in text  # printed whole
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert all(c.help for c in action._choices_actions)
            continue
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        assert all(option in text for option in action.option_strings)


def test_eval_help_through_the_dino_mx_command(capsys: pytest.CaptureFixture) -> None:
    assert dino_mx_main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dino-mx eval")
    assert "knn_val.json otherwise)." in out and "{knn,linear,localize}" in out
    assert "  dino-mx eval knn --ckpt runs/pn\n" in out  # examples keep their lines
    assert dino_mx_main(["eval", "linear", "--help"]) == 0
    assert "--select {accuracy,auc}" in capsys.readouterr().out
    assert dino_mx_main(["visualize", "--help"]) == 0
    assert "Files go to RUN/samples/ for a checkpoint, else to --out." in " ".join(
        capsys.readouterr().out.split()
    )


NETWORK_OPTIONS = ("--ckpt", "--model", "--which", "--data", "--data-root", "--override")


def _option_help(parser: argparse.ArgumentParser, option: str) -> str | None:
    return next(a.help for a in parser._actions if option in a.option_strings)


def test_every_command_explains_the_network_options_alike() -> None:
    parsers = {k: p for k, p in _parsers().items() if k != "eval"}
    reference = parsers["eval knn"]
    for name, parser in parsers.items():
        for option in NETWORK_OPTIONS:
            expected = _option_help(reference, option)
            if name == "visualize" and option == "--data":  # no --baseline to default for
                expected = expected.replace("--model/--baseline", "--model")
            assert _option_help(parser, option) == expected, (name, option)


def test_options_become_one_network_spec() -> None:
    argv = ["--baseline", "pixels", "--data", "medmnist", "--override", "data.flag=chestmnist"]
    for command in ("knn", "linear", "localize"):
        args = build_parser().parse_args([command, *argv])
        assert network_spec(args) == NetworkSpec(
            baseline="pixels", data="medmnist", overrides=("data.flag=chestmnist",)
        )
    args = build_visualize_parser().parse_args(["pca", "--ckpt", "runs/lg", "--which", "student"])
    assert network_spec(args) == NetworkSpec(ckpt="runs/lg", which="student")


def test_visualize_offers_no_baseline(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_visualize_parser().parse_args(["pca", "--model", "vit_micro", "--baseline", "pixels"])
    assert "unrecognized arguments: --baseline" in capsys.readouterr().err
