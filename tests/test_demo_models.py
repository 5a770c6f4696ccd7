"""The demo's models: shipped with the project, run without PyTorch, held to their recipe.

`mgs-monitor demo` scores its scene with the models in demo/models/, made by
`python -m demo.build --ship` from DemoSpec() and its seed. Here the demo runs in a Python that
cannot import the training libraries, and the shipped files and the same recipe rebuilt at a
tiny size keep the same contract (the monitor's model checks); the same ground-truth floors
hold both in tests/test_monitor_vs_truth.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.build import SHIPPED, DemoBuild, DemoSpec, model_metadata
from demo.training import RECIPE_FIELDS
from monitor.scoring.models import LOCALIZER, SCORER, OnnxModel

ROOT = Path(__file__).resolve().parents[1]
# What only the train extra installs: the demo must need none of it.
TRAINING_ONLY = ("torch", "torchvision", "onnx", "onnxscript", "scipy", "sklearn", "statsmodels",
                 "pingouin", "pandas")
# Run before the command: such imports fail as they would where the extra is not installed.
BLOCK_TRAINING = f"""
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""
# `mgs-monitor demo`, its scene drawn at the small size the tests use.
DEMO_COMMAND = BLOCK_TRAINING + """
import demo.build
build_demo = demo.build.build_demo
demo.build.build_demo = lambda **kw: build_demo(spec=demo.build.DemoSpec.small(), quiet=True,
                                                **kw)
from monitor.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {training!r})
print("loaded:", ",".join(loaded))
sys.exit(code)
""".replace("{training!r}", repr(TRAINING_ONLY))


def run_demo(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-c", DEMO_COMMAND, "demo", *args], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_the_demo_runs_on_the_monitors_own_dependencies(tmp_path: Path) -> None:
    done = run_demo(["--fast", "--no-dashboard", "--no-publish"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded: \n" in done.stdout  # nothing of training was imported
    folder = tmp_path / "mgs-monitor" / "demo"
    assert json.loads((folder / "demo.json").read_text())["models"] == "shipped"
    records = list((folder / "records").glob("scores-*.csv"))
    with records[0].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    shipped = {role: model_metadata(SHIPPED / f"{role}.onnx")["model_id"]
               for role in (SCORER, LOCALIZER)}
    assert rows and {(r["model_kind"], r["scorer_id"], r["localizer_id"]) for r in rows} == {
        ("demo", shipped[SCORER], shipped[LOCALIZER])}
    assert not list(folder.glob("*.onnx"))  # the shipped files are run where they are


def test_rebuild_without_the_training_libraries_is_one_line(tmp_path: Path) -> None:
    done = run_demo(["--rebuild", "--fast", "--no-dashboard", "--no-publish"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mgs-monitor: error: --rebuild retrains the demo models with PyTorch (torch missing): "
        "pip install -e '.[train]', or run without --rebuild to use the shipped models"]


@pytest.mark.parametrize("models", [pytest.param("demo_accurate", marks=pytest.mark.slow),
                                    "shipped"])
def test_shipped_and_rebuilt_demo_models_keep_the_contract(
        models: str, request: pytest.FixtureRequest) -> None:
    """Both pass the monitor's model checks, say kind=demo, and carry their id and the recipe
    (seed included) that made them; the shipped ones are DemoSpec()'s and stay small."""
    folder, spec = SHIPPED, DemoSpec()
    if models == "demo_accurate":
        rebuilt: DemoBuild = request.getfixturevalue(models)
        folder, spec = rebuilt.models, rebuilt.spec
    for role in (SCORER, LOCALIZER):
        path = folder / f"{role}.onnx"
        info = OnnxModel(path, role, ["CPUExecutionProvider"]).info
        assert info.kind == "demo" and info.is_demo
        assert info.model_id == info.extra["model_id"] and len(info.model_id) == 12
        assert info.input_size == (spec.scorer_size if role == SCORER else spec.localizer_size)
        made = json.loads(info.extra["recipe"])
        assert made == {"command": "python -m demo.build --ship",
                        **{k: getattr(spec, k) for k in RECIPE_FIELDS}}
        assert info.extra["data_fingerprint"] == f"synthetic-seed{spec.seed}"
    if models == "shipped":
        assert sum(p.stat().st_size for p in SHIPPED.glob("*.onnx")) < 3_000_000
