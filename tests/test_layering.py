"""The package is layered one way: io → graph → data → nn → models → train → rollout → export (errors and utils
below everything; testing and benchmarks on top), the library never imports ``cli``, and no two modules import
each other, directly or through others. Every import counts: module level, inside functions and under
``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the documented order (README "Layout"): a package may import only packages at its level or before it
LAYERS = ("errors", "choices", "utils", "io", "graph", "data", "nn", "models", "train", "rollout", "export", "testing",
          "benchmarks")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every absolute or relative import of ``path`` as ``(imported module, line)``."""
    out = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]  # `from pkg import module`
    return out


def check_layering(root: Path, top: str = "eghn_md", layers=LAYERS) -> list[str]:
    """Violations in package ``top`` under ``root``: backward imports between layers, imports of ``cli``, and
    import cycles between modules."""
    files = {_module_name(p, root): p for p in sorted((root / top).rglob("*.py"))}
    graph: dict[str, set] = {m: set() for m in files}
    problems = []
    for mod, path in files.items():
        layer = mod.split(".")[1] if mod.count(".") else None
        for target, line in _imports(path, mod):
            where = f"{path.relative_to(root)}:{line}"
            if target == "cli" or target.startswith("cli."):
                problems.append(f"{where}: the library imports {target}")
            if target not in files or target == mod or mod.startswith(target + "."):
                continue  # `from eghn_md.pkg import sub` inside pkg names the submodule, not pkg/__init__
            graph[mod].add(target)
            tlayer = target.split(".")[1] if target.count(".") else None
            if layer in layers and tlayer in layers and layers.index(tlayer) > layers.index(layer):
                problems.append(f"{where}: {layer} imports {target} (layer {tlayer} comes after {layer})")
    return problems + [f"import cycle: {' → '.join(c)}" for c in _cycles(graph)]


def _cycles(graph: dict[str, set]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_library_is_layered_one_way_without_cycles():
    problems = check_layering(ROOT)
    assert not problems, "\n".join(problems)


def _fake_package(tmp_path: Path, files: dict) -> Path:
    for name, text in files.items():
        p = tmp_path / "eghn_md" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, expected", [
    ({"io/__init__.py": "", "io/a.py": "def f():\n    from eghn_md.train.loop import fit\n",
      "train/__init__.py": "", "train/loop.py": ""}, "io imports eghn_md.train.loop"),
    ({"rollout/__init__.py": "", "rollout/r.py": "from eghn_md.export import writers\n",
      "export/__init__.py": "", "export/writers.py": ""}, "rollout imports eghn_md.export.writers"),
    ({"graph/__init__.py": "", "graph/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
      "    from eghn_md.graph.b import B\n", "graph/b.py": "from eghn_md.graph import a\n"}, "import cycle"),
    ({"data/__init__.py": "", "data/a.py": "import cli.main\n"}, "the library imports cli.main"),
])
def test_the_check_catches_a_backward_import_a_cycle_and_cli(tmp_path, files, expected):
    problems = check_layering(_fake_package(tmp_path, files))
    assert any(expected in p for p in problems), problems
    # and the same tree without the offending import is clean
    clean = {k: ("" if expected.split()[-1].split(".")[-1] in v or "cli" in v or "TYPE_CHECKING" in v else v)
             for k, v in files.items()}
    assert check_layering(_fake_package(tmp_path / "clean", clean)) == []


#: the longest function the library and the command line may hold, in lines of code
MAX_FUNCTION_LINES = 60


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, lines of code)`` of every function and method in ``path``: the lines from
    ``def`` to the end of the body that hold code, so decorators, the docstring, blank lines and comment-only lines
    do not count (a nested function counts inside its parent too)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    out = []

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                skip = set()
                body = child.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    skip = set(range(body[0].lineno, body[0].end_lineno + 1))
                n = sum(1 for i in range(child.lineno, child.end_lineno + 1)
                        if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))
                out.append((f"{prefix}{child.name}", child.lineno, n))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(source))
    return out


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function over ``limit`` lines of code in ``eghn_md/`` and ``cli/``."""
    out = []
    for top in ("eghn_md", "cli"):
        for path in sorted((root / top).rglob("*.py")):
            out += [f"{path.relative_to(root)}:{line} {name} ({n} lines)"
                    for name, line, n in function_lengths(path) if n > limit]
    return out


def test_no_function_is_longer_than_60_lines_of_code():
    assert long_functions(ROOT) == [], "split these functions:\n" + "\n".join(long_functions(ROOT))


def test_the_length_check_counts_code_lines_only(tmp_path):
    code = [f"    x{i} = {i}" for i in range(59)]
    head = ["@decorator", "def f():", '    """A docstring', "", '    over several lines."""', "    # a comment", ""]
    src = "\n".join([*head, *code, "", "", "class C:", "    def g(self):", *["    " + c for c in code],
                     "        y = 1", "        return y", ""])
    (tmp_path / "eghn_md").mkdir()
    (tmp_path / "eghn_md" / "m.py").write_text(src)
    # f: def + 59 lines = 60 (decorator, docstring, comment and blank lines not counted); C.g: def + 61 = 62
    assert function_lengths(tmp_path / "eghn_md" / "m.py") == [("f", 2, 60), ("C.g", 70, 62)]
    assert long_functions(tmp_path) == ["eghn_md/m.py:70 C.g (62 lines)"]
