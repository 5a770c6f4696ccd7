"""The packages depend in one direction: monitor/ on none of the others, synth/ (synthetic mice)
and train/ on monitor/, export/ on train/ and monitor/, demo/ on all of them, label/ (mgs-label)
on train/ and monitor/.
Inside monitor/, the stages of a frame's trip are layers: capture/ and scoring/ never import
outputs/ or views/, outputs/ never imports views/, and no stage imports the modules on top that
drive them (pipeline, runner, cli, stills): only the shared ones (config, schema, units,
signals). monitor's modules import each other without a circle.
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


STAGES = ("capture", "scoring", "outputs", "views")  # a frame's trip, in order
NEVER = {"capture": {"outputs", "views"}, "scoring": {"outputs", "views"}, "outputs": {"views"}}
SHARED = {"monitor", "monitor.config", "monitor.schema", "monitor.units", "monitor.signals"}


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def monitor_imports(root: Path, path: Path, *, top_only: bool = False) -> set[str]:
    """The monitor modules a file imports (a name imported from a package is the module when it
    is one); with top_only, only those imported when the module itself is (type-checking
    imports included, imports inside functions not)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = _top_level(tree.body) if top_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                inner = f"{node.module}.{alias.name}"
                found.add(inner if _is_module(root, inner) else node.module)
    return {name for name in found if name.split(".")[0] == "monitor"}


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run when a module is imported: its body and the branches of its ifs and trys."""
    found: list[ast.stmt] = []
    for node in body:
        found.append(node)
        if isinstance(node, ast.If | ast.Try):
            found += _top_level(node.body + node.orelse
                                + getattr(node, "finalbody", [])
                                + [s for h in getattr(node, "handlers", []) for s in h.body])
    return found


def _is_module(root: Path, name: str) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def layer_violations(root: Path) -> set[str]:
    """Each import inside monitor/ that goes against the stages' direction."""
    wrong = set()
    for path in sorted((root / "monitor").rglob("*.py")):
        module = module_name(root, path)
        stage = _stage(module)
        if stage is None:
            continue  # the modules on top may import any stage
        for target in monitor_imports(root, path):
            there = _stage(target)
            if there in NEVER.get(stage, set()):
                wrong.add(f"{module} ({stage}) imports {target} ({there})")
            elif there is None and target not in SHARED:
                wrong.add(f"{module} ({stage}) imports {target}, which drives the stages")
    return wrong


def import_circles(root: Path) -> list[list[str]]:
    """Circles among monitor's modules, through the imports made when a module is imported."""
    graph = {module_name(root, path): monitor_imports(root, path, top_only=True)
             for path in sorted((root / "monitor").rglob("*.py"))}
    circles, done = [], set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            circles.append([*trail[trail.index(module):], module])
            return
        if module in done or module not in graph:
            return
        for target in sorted(graph[module]):
            visit(target, [*trail, module])
        done.add(module)

    for module in graph:
        visit(module, [])
    return circles


def test_monitors_stages_import_down_the_frames_trip() -> None:
    assert {stage for stage in STAGES if (ROOT / "monitor" / stage / "__init__.py").is_file()} \
        == set(STAGES)
    assert not layer_violations(ROOT)


def test_monitors_modules_import_without_a_circle() -> None:
    assert not import_circles(ROOT)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_layer_check_sees_a_stage_importing_a_later_one_or_the_pipeline(
        tmp_path: Path) -> None:
    _write(tmp_path, {
        "monitor/__init__.py": "", "monitor/pipeline.py": "", "monitor/config.py": "",
        **{f"monitor/{stage}/__init__.py": "" for stage in STAGES},
        "monitor/views/dashboard.py": "", "monitor/outputs/csvlog.py": "",
        "monitor/capture/workers.py": "from monitor.config import x\n"
                                      "def f():\n    from monitor.views import dashboard\n",
        "monitor/scoring/faces.py": "import monitor.outputs.csvlog\n",
        "monitor/outputs/sinks.py": "from monitor.views.dashboard import render\n"
                                    "from monitor.capture.workers import Frame\n",
        "monitor/views/snapshot.py": "from monitor.pipeline import Analyzer\n",
    })
    assert layer_violations(tmp_path) == {
        "monitor.capture.workers (capture) imports monitor.views.dashboard (views)",
        "monitor.scoring.faces (scoring) imports monitor.outputs.csvlog (outputs)",
        "monitor.outputs.sinks (outputs) imports monitor.views.dashboard (views)",
        "monitor.views.snapshot (views) imports monitor.pipeline, which drives the stages",
    }


def test_the_circle_check_sees_a_circle_but_not_an_import_inside_a_function(
        tmp_path: Path) -> None:
    _write(tmp_path, {
        "monitor/__init__.py": "", "monitor/capture/__init__.py": "",
        "monitor/capture/workers.py": "from monitor.capture.readers import Arrival\n",
        "monitor/capture/readers.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from monitor.capture.workers import Capture\n",
        "monitor/a.py": "def f():\n    from monitor import b\n",
        "monitor/b.py": "import monitor.a\n",
    })
    assert import_circles(tmp_path) == [["monitor.capture.readers", "monitor.capture.workers",
                                         "monitor.capture.readers"]]


def test_the_demo_joins_the_command_line_from_its_own_package() -> None:
    _, commands = build_parser()
    assert {"run", "replay", "score", "dashboard", "log", "proxy", "keys", "demo"} <= commands
