"""The core imports only the standard library and itself (ARCHITECTURE.md), checked by walking its imports."""

import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "src" / "vramplan" / "core"


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def test_core_imports_only_stdlib_and_itself():
    stdlib = set(sys.stdlib_module_names)
    bad = []
    files = sorted(CORE.glob("*.py"))
    assert files
    for f in files:
        for line, name, level in _imports(f):
            top = name.split(".")[0]
            if level == 1:
                continue  # from .model import ...: the core itself
            if level >= 2:
                if not (name.startswith("units") or name.startswith("errors")):
                    bad.append(f"{f.name}:{line} imports ..{name}")
                continue
            if top not in stdlib:
                bad.append(f"{f.name}:{line} imports {name}")
    assert not bad, bad


def test_core_does_no_io():
    banned = ("open(", "urllib", "socket", "subprocess", "argparse", "Path(")
    for f in CORE.glob("*.py"):
        text = f.read_text()
        for b in banned:
            assert b not in text, f"{f.name} uses {b}"
