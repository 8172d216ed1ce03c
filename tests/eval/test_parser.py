"""Help texts of ``dino-mx eval`` and ``dino-mx visualize``: whole sentences, every option."""

from __future__ import annotations

import argparse

import pytest

from dino_mx.cli import main as dino_mx_main
from dino_mx.eval.parser import build_parser
from dino_mx.eval.visualize import build_parser as build_visualize_parser


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
