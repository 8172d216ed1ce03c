"""The package's layering and sizes, checked by scripts/import_graph.py.

The checker itself is tested first on a small package written to tmp_path, so a passing check
on dino_mx means the imports really flow one way, not that the checker sees nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from textwrap import dedent

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts/import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


import_graph = _load_script()


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
    return root


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A package named `pkg` with one legal import per layer boundary and nothing else."""
    return _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "config.py": "",
            "errors.py": "from pkg.config import X\n",
            "train.py": "from pkg.engine.loop import run\nfrom pkg.eval import knn\n",
            "data/__init__.py": "",
            "data/crops.py": "from pkg import config\n",
            "models/__init__.py": "",
            "models/vit.py": "from pkg.data.crops import crop\nfrom ..errors import Bad\n",
            "losses/__init__.py": "",
            "losses/dino.py": "from pkg.models import vit\n",
            "checkpoint/__init__.py": "",
            "checkpoint/io.py": "from ..losses.dino import DINOLoss\n",
            "engine/__init__.py": "from .loop import run\n",
            "engine/loop.py": "from pkg.checkpoint.io import save\nfrom pkg.data import crops\n",
            "eval/__init__.py": "",
            "eval/knn.py": "import pkg.checkpoint.io\nfrom . import knn\n",
        },
    )


def _messages(violations) -> list[str]:
    return [f"[{v.kind}] {v.message}" for v in violations]


def test_legal_imports_are_not_reported(package: Path):
    imports = import_graph.collect_imports(package)
    graph = import_graph.import_graph(imports)
    assert set(graph["models"]) == {"data", "errors"}  # relative `..errors` resolved
    assert set(graph["eval"]) == {"checkpoint"}  # `from . import knn` stays inside eval
    assert import_graph.check_imports(package) == []


def test_upward_import_inside_a_function_is_reported_with_file_and_line(package: Path):
    _write(
        package,
        {"data/crops.py": "from pkg import config\n\ndef f():\n    import pkg.models.vit\n"},
    )
    messages = _messages(import_graph.check_imports(package))
    upward = [m for m in messages if m.startswith("[upward]")]
    assert upward == [
        "[upward] pkg/data/crops.py:4: data imports pkg.models.vit (models is a layer above data)"
    ]
    # models already imports data, so the upward import also closes a cycle
    assert [m for m in messages if m.startswith("[cycle]")] == [
        "[cycle] cycle between data, models: data -> models (pkg/data/crops.py:4); "
        "models -> data (pkg/models/vit.py:1)"
    ]


def test_siblings_top_level_modules_and_unlisted_folders_are_reported(package: Path):
    _write(
        package,
        {
            "engine/loop.py": "from ..eval.knn import score\n",
            "losses/dino.py": "from pkg import train\n",
            "plots/__init__.py": "",
        },
    )
    messages = _messages(import_graph.check_imports(package))
    assert messages[:3] == [
        "[unlisted] package folder plots/ has no layer in LAYERS",
        "[upward] pkg/engine/loop.py:1: engine imports pkg.eval.knn "
        "(engine and eval share a layer: neither imports the other)",
        "[upward] pkg/losses/dino.py:1: losses imports pkg.train "
        "(train is a top-level module; package folders import only config, errors)",
    ]


def test_cycle_between_top_level_modules_is_reported(package: Path):
    _write(package, {"cli.py": "from pkg.train import main\n", "train.py": "from pkg import cli\n"})
    messages = _messages(import_graph.check_imports(package))
    assert messages == [
        "[cycle] cycle between cli, train: "
        "cli -> train (pkg/cli.py:1); train -> cli (pkg/train.py:1)"
    ]


def test_sizes_reports_long_modules_and_functions(tmp_path: Path):
    body = "".join(f"        x{i} = {i}\n" for i in range(5))
    package = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "short.py": "def f():\n    pass\n",
            "long.py": f"class A:\n    def g(self):\n{body}\n" + "\n" * 5,
        },
    )
    found = import_graph.check_sizes(package, max_module_lines=10, max_function_lines=5)
    assert [(o.where, o.lines) for o in found] == [("pkg/long.py", 13), ("pkg/long.py:2 A.g", 6)]


def test_dino_mx_imports_flow_one_way():
    violations = import_graph.check_imports()
    assert not violations, "layering violations:\n" + "\n".join(_messages(violations))


def test_dino_mx_has_no_oversized_modules_or_functions():
    found = import_graph.check_sizes()
    assert not found, "oversized code:\n" + "\n".join(f"{o.lines:5d}  {o.where}" for o in found)
