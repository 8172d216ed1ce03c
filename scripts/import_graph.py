"""Check that imports inside ``dino_mx/`` flow one way through the package's layers.

    python scripts/import_graph.py            # folder-level import graph, then violations
    python scripts/import_graph.py --sizes    # also: modules over 300 lines, functions over 60
    python scripts/import_graph.py --modules  # name the importing modules on each edge

Every module is parsed with :mod:`ast` (nothing is imported), so imports inside functions and
under ``TYPE_CHECKING`` count like the ones at the top of a file. Each module belongs to a
*unit*: its package folder (``dino_mx/engine/trainer.py`` -> ``engine``) or, for a module at
the top of the package, its own name (``dino_mx/train.py`` -> ``train``).

The rules, all read from :data:`LAYERS`:

* a package folder may import the units of the layers below its own, never its own layer's
  siblings (``engine`` and ``eval`` share a layer: neither imports the other) nor a layer above;
* a package folder may not import a top-level module other than the base ones
  (``config``, ``errors``): ``dino_mx/engine/x.py`` importing ``dino_mx.train`` is upward;
* a package folder missing from :data:`LAYERS` is reported until it is given a layer;
* top-level modules (``train``, ``cli``, ``export``, ...) may import anything;
* any cycle between units is reported with the imports that close it.

The exit status is 1 when anything is reported (with ``--sizes``, oversized code counts too).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The single place that says how dino_mx is layered: lowest first. A unit may import the units
# of earlier layers only. The first layer holds the base modules, importable from anywhere.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("config", "errors"),
    ("data",),
    ("models",),
    ("losses",),
    ("checkpoint",),
    ("engine", "eval"),  # siblings: the training loop and evaluation never import each other
)

MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "dino_mx"


@dataclass(frozen=True)
class Import:
    """One ``import``/``from ... import`` of a dino_mx module by another unit."""

    source: str  # importing unit, e.g. "engine"
    target: str  # imported unit, e.g. "data"
    file: str  # importing file, relative to the package's parent, e.g. "dino_mx/engine/x.py"
    line: int
    module: str  # imported module as written/resolved, e.g. "dino_mx.data.multicrop"

    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Violation:
    kind: str  # "upward", "unlisted", "cycle"
    message: str


def _layer_of() -> dict[str, int]:
    return {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _module_name(path: Path, package_dir: Path) -> tuple[str, bool]:
    """Dotted module name of ``path`` and whether it is a package ``__init__``."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts = parts[:-1]
    return ".".join(parts), is_init


def _unit(module: str) -> str:
    """Unit of a dotted module inside the package: its first component below the package,
    or ``__init__`` for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_package_folder(unit: str, package_dir: Path) -> bool:
    return (package_dir / unit).is_dir()


def _resolve(node: ast.ImportFrom, module: str, is_init: bool) -> str | None:
    """Absolute name of the module a ``from ... import`` reads from."""
    if node.level == 0:
        return node.module
    base = module.split(".") if is_init else module.split(".")[:-1]
    if node.level > 1:
        base = base[: -(node.level - 1)]
    if not base:
        return None
    return ".".join(base + ([node.module] if node.module else []))


def _imported_modules(
    tree: ast.AST, module: str, is_init: bool, package_dir: Path
) -> Iterator[tuple[int, str]]:
    """Yield (line, dotted module) for every import of a module of the package in ``tree``."""
    package = package_dir.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_init)
            if base is None or not (base == package or base.startswith(package + ".")):
                continue
            if base == package:
                # `from dino_mx import data` reads the folder `data`; `from dino_mx import
                # __version__` reads the package's __init__.
                for alias in node.names:
                    name = alias.name
                    if (package_dir / name).is_dir() or (package_dir / f"{name}.py").is_file():
                        yield node.lineno, f"{package}.{name}"
                    else:
                        yield node.lineno, package
            else:
                yield node.lineno, base


def _python_files(package_dir: Path) -> list[Path]:
    return sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)


def collect_imports(package_dir: Path = PACKAGE_DIR) -> list[Import]:
    """Every import between two different units of the package at ``package_dir``."""
    imports = []
    for path in _python_files(package_dir):
        module, is_init = _module_name(path, package_dir)
        source = _unit(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(package_dir.parent).as_posix()
        for line, target_module in _imported_modules(tree, module, is_init, package_dir):
            target = _unit(target_module)
            if target != source:
                imports.append(Import(source, target, rel, line, target_module))
    return imports


def import_graph(imports: list[Import]) -> dict[str, dict[str, list[Import]]]:
    """``graph[source][target]``: the imports from unit ``source`` into unit ``target``."""
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in imports:
        graph[imp.source][imp.target].append(imp)
    return graph


def _upward(imp: Import, layer: dict[str, int], package_dir: Path) -> str | None:
    """Why ``imp`` breaks the layering, or None when it is allowed."""
    if not _is_package_folder(imp.source, package_dir):
        return None  # top-level modules may import anything
    if imp.target in layer:
        if layer[imp.target] < layer[imp.source]:
            return None
        if layer[imp.target] == layer[imp.source]:
            return f"{imp.source} and {imp.target} share a layer: neither imports the other"
        return f"{imp.target} is a layer above {imp.source}"
    if _is_package_folder(imp.target, package_dir):
        return f"{imp.target} has no layer in LAYERS"
    return f"{imp.target} is a top-level module; package folders import only {', '.join(LAYERS[0])}"


def _cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def check_imports(package_dir: Path = PACKAGE_DIR) -> list[Violation]:
    """Every upward import, unlisted package folder and cycle between units of the package."""
    imports = collect_imports(package_dir)
    layer = _layer_of()
    violations = []
    for folder in sorted(p.name for p in package_dir.iterdir() if (p / "__init__.py").is_file()):
        if folder not in layer:
            violations.append(
                Violation("unlisted", f"package folder {folder}/ has no layer in LAYERS")
            )
    for imp in sorted(imports, key=lambda i: (i.file, i.line)):
        reason = _upward(imp, layer, package_dir)
        if reason:
            violations.append(
                Violation(
                    "upward",
                    f"{imp.where()}: {imp.source} imports {imp.module} ({reason})",
                )
            )
    graph = import_graph(imports)
    for component in _cycles(graph):
        members = set(component)
        edges = [
            f"{src} -> {dst} ({graph[src][dst][0].where()})"
            for src in component
            for dst in sorted(graph[src])
            if dst in members
        ]
        violations.append(
            Violation("cycle", f"cycle between {', '.join(component)}: " + "; ".join(edges))
        )
    return violations


@dataclass(frozen=True)
class Oversized:
    where: str  # "dino_mx/engine/trainer.py" or "dino_mx/engine/trainer.py:40 Trainer.fit"
    lines: int
    limit: int


def check_sizes(
    package_dir: Path = PACKAGE_DIR,
    max_module_lines: int = MAX_MODULE_LINES,
    max_function_lines: int = MAX_FUNCTION_LINES,
) -> list[Oversized]:
    """Modules longer than ``max_module_lines`` lines and functions (methods and nested
    functions included, from ``def`` to their last line) longer than ``max_function_lines``."""
    found = []
    for path in _python_files(package_dir):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(package_dir.parent).as_posix()
        n_lines = len(text.splitlines())
        if n_lines > max_module_lines:
            found.append(Oversized(rel, n_lines, max_module_lines))
        tree = ast.parse(text, filename=str(path))
        found.extend(_long_functions(tree, rel, max_function_lines, prefix=""))
    return found


def _long_functions(node: ast.AST, rel: str, limit: int, prefix: str) -> list[Oversized]:
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = prefix + child.name
            if not isinstance(child, ast.ClassDef):
                length = child.end_lineno - child.lineno + 1
                if length > limit:
                    found.append(Oversized(f"{rel}:{child.lineno} {name}", length, limit))
            found.extend(_long_functions(child, rel, limit, prefix=name + "."))
        else:
            found.extend(_long_functions(child, rel, limit, prefix=prefix))
    return found


def _print_graph(imports: list[Import], show_modules: bool) -> None:
    graph = import_graph(imports)
    layer = _layer_of()

    def order(unit: str) -> tuple[int, str]:
        return (layer.get(unit, len(LAYERS)), unit)

    print("import graph (unit -> imported units, with import counts):")
    for source in sorted(graph, key=order):
        targets = sorted(graph[source], key=order, reverse=True)
        print(f"  {source} -> " + ", ".join(f"{t} ({len(graph[source][t])})" for t in targets))
        if show_modules:
            for target in targets:
                files = sorted({imp.file for imp in graph[source][target]})
                print(f"      {target}: {', '.join(files)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=PACKAGE_DIR, help="package folder")
    parser.add_argument("--sizes", action="store_true", help="also report oversized code")
    parser.add_argument("--modules", action="store_true", help="name importing modules")
    args = parser.parse_args(argv)

    _print_graph(collect_imports(args.package), args.modules)
    violations = check_imports(args.package)
    print(f"\n{len(violations)} layering violation(s):")
    for v in violations:
        print(f"  [{v.kind}] {v.message}")
    failed = bool(violations)

    if args.sizes:
        oversized = check_sizes(args.package)
        print(
            f"\n{len(oversized)} oversized (modules > {MAX_MODULE_LINES} lines, "
            f"functions > {MAX_FUNCTION_LINES} lines):"
        )
        for o in sorted(oversized, key=lambda o: -o.lines):
            print(f"  {o.lines:5d}  {o.where}")
        failed = failed or bool(oversized)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
