"""Shared fixtures: small real models made through the project's own training and export code.

Only the camera device is ever faked (see FakeCamera); videos are real files written and read
by OpenCV, models are real ONNX files run by onnxruntime, ZeroMQ runs on loopback, and
PostgreSQL is a real server started in a temporary folder (tests/postgres_util.py).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import synth
from demo.build import DemoBuild, DemoSpec, build_demo
from export.onnx_export import export_localizer, export_scorer
from tests.postgres_util import PostgresServer
from train.evaluate import cli as eval_cli
from train.models import FaceLocalizer, UnitScorer
from train.train import cli as train_cli

# Session fixtures that train models: the first test to ask for one waits for the training
# (tens of seconds), so every test that asks for one is `slow`.
TRAINING_FIXTURES = {"demo_small", "demo_accurate", "cv_run"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """A small demo build: tiny models trained on synthetic faces, two short videos."""
    return build_demo(tmp_path_factory.mktemp("demo"), DemoSpec.small(), quiet=True, train=True)


@pytest.fixture(scope="session")
def demo_accurate(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """The small demo with a scorer trained to score its scene well (DemoSpec.small_accurate),
    for tests that hold the monitor's scores to the truth: the shipped models' recipe, rebuilt
    at a tiny size."""
    return build_demo(tmp_path_factory.mktemp("demo-accurate"), DemoSpec.small_accurate(),
                      quiet=True, train=True)


@pytest.fixture(scope="session")
def demo_shipped(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """The small_accurate scene scored by the models that ship with the demo (demo/models/),
    as `mgs-monitor demo` scores its own."""
    return build_demo(tmp_path_factory.mktemp("demo-shipped"), DemoSpec.small_accurate(),
                      quiet=True)


@pytest.fixture(scope="session")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run on 80 synthetic faces: two folds of whole mice and the final fit, evaluated
    (report/report.json). Shared by the training and export tests: read it, copy it to change
    it."""
    faces = synth.write_face_dataset(tmp_path_factory.mktemp("mouse-cv-faces"), 80,
                                     np.random.default_rng(0), size=64)
    out = tmp_path_factory.mktemp("mouse-cv-run")
    assert train_cli(["--labels", str(faces), "--arch", "tiny", "--input-size", "32",
                      "--weights", "none", "--batch-size", "16", "--lr", "0.05", "--folds", "2",
                      "--epochs", "2", "--output-dir", str(out)]) == 0
    assert eval_cli(["--run", str(out), "--pain-conditions", "pain", "--bootstrap", "20",
                     "--gradcam", "0"]) == 0
    return out


@pytest.fixture(scope="session")
def random_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained tiny models, exported as a real scorer/localizer pair (fast to make)."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    scorer = UnitScorer("tiny", 32).eval()
    export_scorer(scorer, folder / "scorer.onnx",
                  rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8), kind="demo")
    localizer = FaceLocalizer(32).eval()
    export_localizer(localizer, folder / "localizer.onnx",
                     rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8), kind="demo")
    return folder


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_endpoint() -> str:
    """A loopback TCP endpoint nothing listens on right now."""
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def free_endpoint() -> Iterator[str]:
    yield free_port_endpoint()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session, on a free loopback port; stopped at the end."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop()
        server.remove()


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """The session's server, running again after a test that stopped it."""
    yield postgres_server
    with contextlib.suppress(RuntimeError):  # already running
        postgres_server.start()


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres.new_database()
