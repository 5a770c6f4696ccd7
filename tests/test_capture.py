import socket
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.capture import CaptureWorker, Frame, FrameQueue, ImageSequence, frame_sharpness
from monitor.config import Sampling
from tests.fakes import FakeCamera


def textured(seed: int, blur: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    return cv2.GaussianBlur(image, (0, 0), blur) if blur else image


def write_video(path: Path, frames: int, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for i in range(frames):
        image = np.full((120, 160, 3), 40, np.uint8)
        cv2.putText(image, str(i), (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(image)
    writer.release()
    return path


def run_worker(worker: CaptureWorker, stop: threading.Event, seconds: float) -> None:
    worker.start()
    worker.join(seconds)
    stop.set()
    worker.join(5)
    assert not worker.is_alive()


def drain(queue: FrameQueue) -> list[Frame]:
    return queue.take_all(0.0)


def test_video_is_sampled_by_its_own_clock(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", frames=50, fps=10.0)
    queue, stop = FrameQueue(100), threading.Event()
    worker = CaptureWorker("cam0", str(video), Sampling(every_s=1.0, burst=1), queue, stop,
                           realtime=False, wait_when_full=True)
    run_worker(worker, stop, 10)
    frames = drain(queue)
    assert [f.frame_index for f in frames] == [0, 10, 20, 30, 40]
    assert [f.source_time for f in frames] == pytest.approx([0, 1, 2, 3, 4])
    health = worker.health()
    assert health.state == "ended" and health.total_frames == 50 and health.position == 50
    assert health.frames_read == 5  # skipped frames are grabbed, not decoded


def test_burst_keeps_the_sharpest_frame() -> None:
    frames = [textured(1, blur=4), textured(2), textured(3, blur=2)]
    assert frame_sharpness(frames[1]) > max(frame_sharpness(frames[0]), frame_sharpness(frames[2]))
    queue, stop = FrameQueue(10), threading.Event()
    camera = FakeCamera(frames)
    worker = CaptureWorker("cam0", 0, Sampling(every_s=60, burst=3), queue, stop,
                           opener=lambda _source: camera)
    run_worker(worker, stop, 0.5)
    (frame,) = drain(queue)
    assert np.array_equal(frame.image, frames[1])
    assert camera.released  # periodic sampling releases the device between samples


def test_camera_that_drops_and_comes_back() -> None:
    """Down: a camera_down frame per due sample and state down; back: counted reconnect.

    Sampled often, the device stays open between samples; a failed read closes it and the
    next due sample reopens it.
    """
    sessions = iter([FakeCamera([textured(1), None]), FakeCamera([], opened=False),
                     FakeCamera([textured(2), textured(3)])])
    queue, stop = FrameQueue(10), threading.Event()
    worker = CaptureWorker("cam0", 0, Sampling(every_s=0.05, burst=1), queue, stop,
                           opener=lambda _source: next(sessions))
    worker.start()
    deadline = time.monotonic() + 5
    frames: list[Frame] = []
    while len(frames) < 5 and time.monotonic() < deadline:
        frames.extend(queue.take_all(0.1))
    stop.set()
    worker.join(5)
    kinds = ["down" if f.image is None else "ok" for f in frames[:5]]
    assert kinds == ["ok", "down", "down", "ok", "ok"]
    assert frames[1].error and worker.health().reconnects == 1
    assert worker.health().frames_read == 3


def test_unreadable_video_reports_down(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    queue, stop = FrameQueue(10), threading.Event()
    worker = CaptureWorker("cam0", str(bad), Sampling(), queue, stop, realtime=False)
    run_worker(worker, stop, 5)
    (frame,) = drain(queue)
    assert frame.image is None and "cannot open" in frame.error
    assert worker.health().state == "down"


def test_full_queue_drops_oldest_and_counts() -> None:
    queue, stop = FrameQueue(2), threading.Event()
    queue.put(Frame("slow", None, 0.0, 0.0, 0.0, 0), block=False, stop=stop)
    for i in range(5):
        queue.put(Frame("fast", None, 0.0, float(i + 1), float(i), i), block=False, stop=stop)
    frames = drain(queue)
    assert [(f.camera, f.frame_index) for f in frames] == [("slow", 0), ("fast", 3), ("fast", 4)]
    assert queue.drops() == {"fast": 3}  # a fast camera never pushes out another's sample


def test_replay_keeps_captured_frames_when_stopped() -> None:
    queue, stop = FrameQueue(1), threading.Event()
    queue.put(Frame("cam0", None, 0.0, 0.0, 0.0, 0), block=True, stop=stop)
    stop.set()
    queue.put(Frame("cam0", None, 0.0, 1.0, 1.0, 1), block=True, stop=stop)
    assert [f.frame_index for f in drain(queue)] == [0, 1] and not queue.drops()


def test_image_folder_source(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), textured(i))
    (tmp_path / "1b.png").write_bytes(b"not a picture")  # skipped, not the end of the folder
    (tmp_path / "notes.txt").write_text("ignored")
    sequence = ImageSequence(str(tmp_path))
    assert sequence.isOpened() and len(sequence.paths) == 4
    queue, stop = FrameQueue(10), threading.Event()
    worker = CaptureWorker("cam0", str(tmp_path), Sampling(burst=1), queue, stop, realtime=False)
    run_worker(worker, stop, 5)
    assert [f.frame_index for f in drain(queue)] == [0, 1, 2]


class BrokenDriver(FakeCamera):
    def read(self) -> tuple[bool, np.ndarray | None]:
        raise RuntimeError("driver fault")


def test_a_crashing_driver_is_a_camera_down_and_is_retried() -> None:
    sessions = iter([BrokenDriver([]), FakeCamera([textured(1)] * 3)])
    queue, stop = FrameQueue(10), threading.Event()
    worker = CaptureWorker("cam0", 0, Sampling(every_s=0.05, burst=1), queue, stop,
                           opener=lambda _source: next(sessions))
    worker.start()
    frames: list[Frame] = []
    deadline = time.monotonic() + 10
    while not any(f.image is not None for f in frames) and time.monotonic() < deadline:
        frames.extend(queue.take_all(0.1))
    stop.set()
    worker.join(5)
    assert frames[0].image is None and "driver fault" in frames[0].error
    assert any(f.image is not None for f in frames[1:])


def test_a_stalled_stream_times_out_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real HTTP stream on loopback that accepts and then never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    held: list[object] = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    monkeypatch.setattr("monitor.capture.STREAM_TIMEOUT_MS", 1000)
    queue, stop = FrameQueue(10), threading.Event()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg"
    worker = CaptureWorker("cam0", url, Sampling(every_s=60, burst=1), queue, stop)
    started = time.monotonic()
    worker.start()
    frames = queue.take_all(15)
    waited = time.monotonic() - started
    stop.set()
    worker.join(15)
    server.close()
    assert frames and frames[0].image is None and worker.health().state == "down"
    assert frames[0].error == f"cannot open source {url!r}" == worker.health().error
    assert 1.0 <= waited < 10  # the 1 s timeout was waited for, and no more than a little


def test_cameras_added_while_the_pipeline_polls() -> None:
    """Workers add their cameras' queues while the pipeline counts and takes: every frame is
    either taken or counted as dropped, and nothing trips over a queue being added."""
    queue, stop = FrameQueue(2), threading.Event()
    errors: list[BaseException] = []
    rounds, cameras, frames_each = 4, 1000, 3

    def capture(first: int) -> None:
        try:
            for camera in range(first, rounds * cameras, 8):
                for i in range(frames_each):
                    queue.put(Frame(f"cam{camera}", None, 0.0, float(i), float(i), i),
                              block=False, stop=stop)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=capture, args=(k,)) for k in range(8)]
    taken = 0
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers):
            try:
                len(queue)
                queue.drops()
                taken += len(queue.take_all(0.0))
            except BaseException as exc:
                errors.append(exc)
        taken += len(queue.take_all(0.0))
    finally:
        sys.setswitchinterval(switch)
    assert not errors
    assert taken + sum(queue.drops().values()) == rounds * cameras * frames_each
