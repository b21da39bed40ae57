"""The package's layout: subpackages by concern, stacked in floors; a module imports only its own floor or lower
ones, and no import cycle exists (imports inside functions included); docs/design.md's layout names every module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lenet_tf"

# Lowest first. The model floor is the package's top level; the entry points sit above the command line.
FLOORS = [
    ("core",),                                   # errors, TensorFlow import, precision, output writing, options
    ("data",),                                   # IDX, MNIST files and cache, user images, augmentation
    ("runs",),                                   # the training folder: checkpoints and run record
    ("model", "objectives", "rejection", "inference", "trained"),  # the reusable LeNet5 and what uses one
    ("training",),                               # trainer, loop, presets, cluster
    ("evaluation",),                             # test set, robustness suites, figures
    ("serving",),                                # predict, SavedModel, TFLite, HTTP server
    ("benchmark",),                              # throughput against the alternatives
    ("cli",),                                    # the lenet-tf command
    ("__main__", "train", "__init__"),           # entry points: python -m lenet_tf, python -m lenet_tf.train
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _imports(path: Path) -> set[str]:
    """Every lenet_tf module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lenet_tf")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lenet_tf"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = any(PACKAGE.parent.joinpath(*candidate.split(".")).with_suffix(s).exists()
                                for s in (".py", "")) and candidate != "lenet_tf.LeNet5"
                found.add(candidate if is_module else node.module)
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOOR["__init__" if len(parts) == 1 else parts[1]]


def test_every_module_has_a_floor():
    unknown = sorted(m for m in MODULES if (m.split(".") + ["__init__"])[1] not in FLOOR)
    assert not unknown, f"modules outside every floor (add them to FLOORS): {unknown}"


def test_no_module_imports_a_higher_floor():
    upward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                    if d != "lenet_tf" and _floor(d) > _floor(m))
    assert not upward, "imports of a higher floor:\n" + "\n".join(upward)


def test_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(GRAPH[module]):
            if dep == "lenet_tf":
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_at_most_eight_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_subpackages_are_the_floors():
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert set(folders) <= set(FLOOR), folders


def _design_layout() -> set[str]:
    """The package's files docs/design.md's layout names (``data/images.py``), read from its tree's indentation."""
    text = (PACKAGE.parent / "docs" / "design.md").read_text(encoding="utf-8")
    tree = text.split("## Layout by concern", 1)[1].split("```", 2)[1]
    named, folder = set(), None
    for line in tree.splitlines():
        depth, entry = (len(line) - len(line.lstrip())) // 2, (line.split() or [""])[0]
        if depth == 0:
            folder = "" if entry == "lenet_tf/" else None  # the package's tree ends where the repo's folders begin
        elif folder is not None and entry.endswith("/"):
            folder = entry if depth == 1 else folder
        elif folder is not None and entry.endswith(".py"):
            named.add((folder if depth == 2 else "") + entry)
    return named


def test_the_design_page_names_every_module_and_no_other():
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    named = _design_layout()
    assert not modules - named, f"modules docs/design.md's layout leaves out: {sorted(modules - named)}"
    assert not named - modules, f"files docs/design.md's layout names that do not exist: {sorted(named - modules)}"
