import re
import socket
from pathlib import Path

import pytest

from monitor.cli import csv_path, main
from monitor.config import ConfigError, load_config

GOOD = """\
cameras:
  - name: rack1
    source: 0
  - name: rack2
    source: videos/rack2.mp4
    cubicles:
      - {mouse: m1, roi: [0.0, 0.0, 0.5, 1.0]}
      - {mouse: m2, roi: [0.5, 0.0, 0.5, 1.0]}
models:
  scorer: models/scorer.onnx
  localizer: models/localizer.onnx
sampling: {every_s: 60, burst: 3}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def test_good_config_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    rack1, rack2 = config.cameras
    assert [c.mouse for c in rack1.cubicle_list()] == [f"rack1-c{i}" for i in range(1, 5)]
    assert rack1.cubicle_list()[3].roi == pytest.approx((0.75, 0.0, 0.25, 1.0))
    assert [c.mouse for c in rack2.cubicle_list()] == ["m1", "m2"]
    assert config.models.scorer == tmp_path / "models" / "scorer.onnx"
    assert rack2.source == str(tmp_path / "videos" / "rack2.mp4")
    assert rack1.source == 0
    assert config.sampling.every_s == 60 and config.sampling_for(rack1).burst == 3
    assert config.publisher == f"mgs-monitor@{socket.gethostname()}"  # two hosts never share one


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("burst: 3", "burst: 3, bursts: 4"), "sampling.bursts: unknown key"),
        (GOOD.replace("every_s: 60", "every_s: often"), "sampling.every_s:"),
        (GOOD.replace("every_s: 60", "every_s: -5"), "sampling.every_s: Input should be greater"),
        (GOOD.replace("mouse: m2", "mouse: m1"), "duplicate mouse id 'm1'"),
        (GOOD.replace("name: rack2", "name: rack1"), "duplicate camera name 'rack1'"),
        (GOOD.replace("[0.5, 0.0, 0.5, 1.0]", "[0.7, 0.0, 0.5, 1.0]"),
         "cameras.1.cubicles.1.roi: [0.7, 0.0, 0.5, 1.0] must have w, h > 0 and lie inside"),
        (GOOD.replace("[0.5, 0.0, 0.5, 1.0]", "[0.25, 0.0, 0.5, 1.0]"),
         "cameras.1.cubicles: regions of 'm1' and 'm2' overlap"),
        (GOOD.replace("[0.5, 0.0, 0.5, 1.0]", "[0.5, 0.0, 1.5, 1.0]"),
         "cameras.1.cubicles.1.roi.2: Input should be less than or equal to 1"),
        (GOOD.replace("  localizer: models/localizer.onnx\n", ""),
         "models.localizer: Field required"),
        (GOOD + "csv: {rotate: weekly}\n", "csv.rotate: Input should be 'daily', 'hourly'"),
        ("cameras: [\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0
    assert "ok (2 cameras, 6 mice)" in capsys.readouterr().out
    bad = write(tmp_path, GOOD.replace("sampling:", "samplin:"))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "samplin: unknown key" in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read config" in capsys.readouterr().err


def test_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "configs" / "example.yaml")
    assert [c.name for c in config.cameras] == ["rack1", "rack2"]
    assert config.alerts.overrides["M101"].threshold == 3
    assert config.alerts.defaults.window == 3


RACK2_SAMPLING = GOOD.replace("    cubicles:\n", "    sampling: {every_s: 30}\n    cubicles:\n")


def test_camera_sampling_keeps_the_global_keys_it_does_not_set(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, RACK2_SAMPLING))
    rack1, rack2 = config.cameras
    assert config.sampling_for(rack2).every_s == 30 and config.sampling_for(rack2).burst == 3
    assert config.sampling_for(rack1).every_s == 60


def test_command_line_values_lay_over_the_file(tmp_path: Path) -> None:
    from monitor.cli import config_from_args, file_settings, parse_args

    text = RACK2_SAMPLING + "alerts: {threshold: 3, defaults: {window: 5}}\n"
    path = write(tmp_path, text)
    args = parse_args(["--config", str(path), "--every", "10"])
    raw, origin = file_settings(args)
    config = config_from_args(args, raw, origin)
    assert [config.sampling_for(c).every_s for c in config.cameras] == [10, 10]
    assert config.alerts.defaults.threshold == 3 and config.alerts.defaults.window == 5


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"cameras: 5\nmodels: {scorer: a, localizer: b}\n", "cameras: Input should be a valid list"),
     (b"cameras: [\xff\xfe]\n", "not UTF-8 text")],
)
def test_odd_files_are_one_line(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_allowed_clients_is_relative_to_the_file_and_needs_a_secret_key(tmp_path: Path) -> None:
    keys = "bus: {secret_key: keys/server.key_secret, allowed_clients: clients}\n"
    config = load_config(write(tmp_path, GOOD + keys))
    assert config.bus.allowed_clients == tmp_path / "clients"
    assert config.bus.secret_key == tmp_path / "keys" / "server.key_secret"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + "bus: {allowed_clients: clients}\n"))
    assert str(err.value) == (f"{tmp_path / 'lab.yaml'}: bus: allowed_clients: clients are "
                              "known by their CURVE keys, so it needs secret_key too")


def test_run_rotates_daily_in_its_folder_and_an_out_file_only_when_the_config_says(
        tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert csv_path(config, None) == (config.csv.folder / "scores.csv", "daily")
    assert csv_path(config, tmp_path / "x.csv") == (tmp_path / "x.csv", "never")
    never = load_config(write(tmp_path, GOOD + "csv: {rotate: never}\n"))
    path, rotate = csv_path(never, None)
    assert rotate == "never" and re.fullmatch(r"scores-\d{8}-\d{6}\.csv", path.name)
    hourly = load_config(write(tmp_path, GOOD + "csv: {rotate: hourly}\n"))
    assert csv_path(hourly, tmp_path / "x.csv") == (tmp_path / "x.csv", "hourly")
