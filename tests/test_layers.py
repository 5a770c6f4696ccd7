"""The packages depend in one direction: monitor/ on none of the others, synth/ (synthetic mice)
and train/ on monitor/, export/ on train/ and monitor/, demo/ on all of them, label/ (mgs-label)
on train/ and monitor/.
Read from the source, import by import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from monitor.cli import build_parser

ROOT = Path(__file__).parent.parent
PACKAGES = ("monitor", "synth", "train", "export", "demo", "label")
ALLOWED = {
    "monitor": {"monitor"},
    "synth": {"synth", "monitor"},
    "train": {"train", "monitor"},
    "export": {"export", "train", "monitor"},
    "demo": {"demo", "synth", "export", "train", "monitor"},
    "label": {"label", "train", "monitor"},
}


def imported_packages(path: Path) -> set[str]:
    """The project packages a module imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_one_way(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()  # a package checked here is one
    wrong = {f"{path.relative_to(ROOT)} imports {other}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for other in imported_packages(path) - ALLOWED[package]}
    assert not wrong


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from train.demo import x\n    import export.cli\n")
    assert imported_packages(module) == {"train", "export"}


def test_the_demo_joins_the_command_line_from_its_own_package() -> None:
    _, commands = build_parser()
    assert {"run", "replay", "score", "dashboard", "log", "proxy", "keys", "demo"} <= commands
