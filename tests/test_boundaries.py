"""The core, translators and training never import Qt or napari (they must run headless, on servers)."""

import json
import subprocess
import sys

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "qtpy", "superqt", "napari", "magicgui", "vispy")


def test_core_translators_training_import_without_qt():
    code = (
        "import sys, json\n"
        "import napari_medtrans.core, napari_medtrans.core.io, napari_medtrans.translators, "
        "napari_medtrans.training\n"
        "import napari_medtrans.translators.base as b; b.list_translators()\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    leaked = sorted(loaded.intersection(FORBIDDEN))
    assert leaked == [], f"headless packages imported GUI modules: {leaked}"


def test_every_headless_module_imports_without_qt():
    """Walk the headless packages and import every module (not only the entry points): none loads Qt or napari,
    and every one imports."""
    code = (
        "import sys, json, importlib, pkgutil\n"
        "names = []\n"
        "for pkg in ('core', 'translators', 'training', 'phantom', 'segment', 'study'):\n"
        "    mod = importlib.import_module('napari_medtrans.' + pkg)\n"
        "    names.append(mod.__name__)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, mod.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "        names.append(info.name)\n"
        "print(json.dumps([names, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    names, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(names) > 60 and "napari_medtrans.study.mrmc" in names and "napari_medtrans.segment.promptnet" in names
    leaked = sorted(set(loaded).intersection(FORBIDDEN))
    assert leaked == [], f"headless modules imported GUI modules: {leaked}"


def test_cli_help_is_fast_and_headless():
    code = (
        "import sys, json\n"
        "from napari_medtrans.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded.intersection(FORBIDDEN + ("torch",)), "medtrans --help must not import torch or Qt"


# Floors (../shared/ARCHITECTURE.md): a module imports only from its own floor or below. Reader studies,
# segmentation and the phantom are features above training, each its own package.
FLOORS = {"core": 0, "translators": 1, "training": 2, "phantom": 3, "study": 3, "segment": 3, "qt": 4,
          "_napari": 5, "_cli": 6, "cli": 6}


def _floor(module: str):
    parts = module.split(".")
    if parts[0] != "napari_medtrans" or len(parts) < 2:
        return None
    two = ".".join(parts[1:3])
    return FLOORS.get(two, FLOORS.get(parts[1], 0 if parts[1] == "__init__" else None))


def _imports(path, module: str, is_package: bool):
    import ast

    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module or ""


def test_every_module_imports_only_its_floor_or_below():
    """Every import in napari_medtrans (top-level or inside a function) points down or sideways, never up."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "napari_medtrans"
    upward = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        here = _floor(module)
        for target in _imports(path, module, rel.name == "__init__"):
            there = _floor(target)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} imports {target}")
    assert upward == [], "\n".join(upward)


def test_the_floor_rule_catches_an_upward_import():
    assert _floor("napari_medtrans.core.volume") == 0 and _floor("napari_medtrans.segment.train") == 3
    assert _floor("napari_medtrans.training.evaluate") == 2 and _floor("napari_medtrans._cli.table3") == 6
    assert _floor("numpy") is None


# -- import circles ---------------------------------------------------------------------------------------
#: The one circle allowed: the translator registry (base imports _builtin, which imports every method module,
#: which imports base); any other circle, even between two translator modules, fails.
REGISTRY = "napari_medtrans.translators._builtin"


def _import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports, anywhere in the file (inside functions too), except under
    ``if TYPE_CHECKING:`` (annotations only: no import at run time)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = {}
    for base, prefix in ((root / "napari_medtrans", "napari_medtrans"), (root / "app" / "medtrans_app", "medtrans_app")):
        for path in base.rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join((prefix, *parts))
            files[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                base_name = (".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                             + (f".{node.module}" if node.module else "")) if node.level else (node.module or "")
                subs = [f"{base_name}.{a.name}" for a in node.names if f"{base_name}.{a.name}" in files]
                targets = subs if len(subs) == len(node.names) else [base_name, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_outside_the_translator_registry():
    circles = _circles(_import_graph())
    outside = [c for c in circles
               if REGISTRY not in c or not all(m.startswith("napari_medtrans.translators.") for m in c)]
    assert outside == [], f"modules that import each other (directly or round a circle): {outside}"


def test_the_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- sizes (issue 22): a module a reader can hold, a function a reader can follow -------------------------
MAX_MODULE_LINES = 600
#: One translator per module may be larger: its paper's method in one place (translators/<method>.py).
MAX_METHOD_MODULE_LINES = 750
MAX_FUNCTION_LINES = 120


def _oversized(paths, method_modules=()):
    import ast

    found = []
    for path in paths:
        text = path.read_text()
        lines = text.count("\n")
        limit = MAX_METHOD_MODULE_LINES if path.stem in method_modules else MAX_MODULE_LINES
        if lines > limit:
            found.append(f"{path}: {lines} lines (at most {limit})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{path}:{node.lineno} {node.name}: {n} lines (at most {MAX_FUNCTION_LINES})")
    return found


def test_no_module_or_function_is_too_large():
    from pathlib import Path

    from napari_medtrans.translators.base import list_translators

    root = Path(__file__).resolve().parents[1]
    paths = sorted([*(root / "napari_medtrans").rglob("*.py"), *(root / "app").rglob("*.py")])
    methods = {name for m in list_translators() for name in (m.replace("-", ""), m.split("-")[0])}
    assert len(paths) > 100
    assert _oversized(paths, methods) == []


def test_the_size_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    (tmp_path / "short.py").write_text("def g():\n    return 1\n")
    found = _oversized(sorted(tmp_path.glob("*.py")))
    assert len(found) == 1 and "long.py:1 f: 121 lines" in found[0]
