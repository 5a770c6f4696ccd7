import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from monitor.cli import main
from train.models import UnitScorer, load_imagenet_weights


def test_help_teaches_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("replay", "score", "dashboard", "log", "check-config", "demo"):
        assert command in out
    assert "mgs-monitor --cameras 4" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cameras", "0"], "--cameras 0: need at least one camera"),
        (["--every", "-3", "--models", "nowhere"], "sampling.every_s: Input should be greater"),
        (["--burst", "0"], "sampling.burst: Input should be greater than or equal to 1"),
        (["--cameras", "2", "--models", "nowhere"],
         "nowhere/scorer.onnx: model file not found (write one with mgs-export, give "
         "--models DIR, or run scripts/demo for DEMO models)"),
    ],
)
def test_bad_values_are_one_line(argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--camras", "4"])
    assert done.value.code == 2
    assert "unrecognized arguments: --camras" in capsys.readouterr().err


def test_monitor_runtime_does_not_need_torch() -> None:
    code = ("import sys, monitor.cli, monitor.pipeline, monitor.stills; "
            "monitor.cli.build_parser(); "  # with every installed command, the demo's included
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_weights_from_a_local_file(tmp_path: Path) -> None:
    assert load_imagenet_weights("none") is None
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    weights = load_imagenet_weights(str(path))
    assert weights is not None
    scorer = UnitScorer("resnet18", 64, weights)
    first = scorer.units[0]
    assert torch.equal(first.conv1.weight, weights["conv1.weight"])  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"missing\.pth: weights file not found"):
        load_imagenet_weights(str(tmp_path / "missing.pth"))
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision ResNet18 state dict"):
        load_imagenet_weights(str(tmp_path / "other.pth"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_frame_buffers_are_kept_out_of_the_heap() -> None:
    from monitor.frame_memory import keep_frames_out_of_the_heap

    assert keep_frames_out_of_the_heap()


def test_only_the_monitors_own_line_reaches_the_terminal(tmp_path: Path) -> None:
    """Before, FFmpeg's 'moov atom not found' stood beside it."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    done = subprocess.run([sys.executable, "-m", "monitor", "replay", str(broken)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"mgs-monitor: error: {broken}: not a video OpenCV can read"]


def test_keys_into_a_place_that_cannot_hold_them_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["keys", str(blocker / "keys")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{blocker / 'keys'}: cannot write the keys here" in err
