"""The README and docs/: links resolve, and the commands they give are the ones that run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dino_mx.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMANDS = {"train", "eval", "export", "visualize", "demo", "data"}


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def code_blocks(page: Path) -> list[str]:
    return re.findall(r"```\w*\n(.*?)```", page.read_text(), re.DOTALL)


def test_slug_matches_github():
    assert slug("Speed: batched multi-crop") == "speed-batched-multi-crop"
    assert slug("Domain adaptation, offline") == "domain-adaptation-offline"
    assert slug("iBOT, KoLeo — and more") == "ibot-koleo--and-more"  # GitHub keeps both -


def test_docs_exist_and_readme_links_each():
    linked = {m.split("#")[0] for m in LINK.findall((ROOT / "README.md").read_text())}
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in linked, page.name
    assert len(PAGES) >= 6


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} -> missing {file}"
        if anchor:
            assert anchor in anchors(file), f"{page.name}: {target}: no heading #{anchor}"


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_second_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_command = [line for line in ci if line.strip() and not line.startswith(("#", "set", "cd"))]
    assert quickstart_commands()[1] == "scripts/setup.sh dev && .venv/bin/python -m pytest -q"
    assert ci_command[-1] == quickstart_commands()[1]


def test_quickstart_first_command_runs_the_demo(capsys):
    assert quickstart_commands()[0] == "scripts/setup.sh && .venv/bin/dino-mx demo"
    assert cli_main(["demo", "--help"]) == 0
    assert "usage: dino-mx demo" in capsys.readouterr().out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_documented_dino_mx_commands_exist(page):
    used = {m for block in code_blocks(page) for m in re.findall(r"dino-mx (\w+)", block)}
    assert used <= COMMANDS, f"{page.name}: unknown dino-mx commands {used - COMMANDS}"
    assert "demo_pneumonia" not in page.read_text()
