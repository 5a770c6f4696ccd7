import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.capture.readers import NewestFrameReader
from monitor.capture.workers import (
    CaptureWorker,
    Frame,
    FrameQueue,
    ImageSequence,
    frame_sharpness,
    open_capture,
)
from monitor.config import Sampling
from tests.fakes import FakeCamera, MjpegCamera, frame_number


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
    monkeypatch.setattr("monitor.capture.workers.STREAM_TIMEOUT_MS", 1000)
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


def take_for(queue: FrameQueue, seconds: float,
             until: Callable[[Frame], bool] = lambda _f: False) -> list[tuple[Frame, float]]:
    """Frames as the pipeline would take them, each with the time it was taken."""
    taken: list[tuple[Frame, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(until(f) for f, _ in taken):
        taken.extend((frame, time.time()) for frame in queue.take_all(0.02))
    return taken


def sampled_stream(fps: float) -> tuple[MjpegCamera, FrameQueue, threading.Event,
                                        CaptureWorker]:
    """A loopback IP camera and a started worker sampling it at 5 fps, held open."""
    camera = MjpegCamera(fps=fps)
    queue, stop = FrameQueue(10), threading.Event()
    worker = CaptureWorker("cam0", camera.url, Sampling(every_s=0.2, burst=1), queue, stop)
    worker.start()
    return camera, queue, stop, worker


@pytest.mark.slow
def test_a_held_open_stream_gives_its_newest_frame() -> None:
    """An IP camera at 10 fps, sampled at 5: read in order, each sample would be older than the
    last (the unread half waits in the socket). Kept drained, every frame taken is one the
    camera has just sent, and it is timed by its arrival, not by when it was read."""
    camera, queue, stop, worker = sampled_stream(fps=10)
    taken = take_for(queue, 5)
    stop.set()
    worker.join(5)
    camera.kill()
    assert len(taken) >= 15
    numbers = [frame_number(frame.image) for frame, _ in taken]
    assert numbers == sorted(set(numbers))
    for (frame, took), number in zip(taken, numbers, strict=True):
        sent = camera.sent[number]
        assert frame.wall_time - sent < 0.1  # arrival, which on loopback is the send time
        assert took - sent < 0.1 + 0.2  # one frame interval, plus pick-up on a busy machine
    assert worker.health().frames_dropped == 0  # frames between samples are not drops


@pytest.mark.slow
def test_a_dead_stream_is_camera_down_at_once() -> None:
    """Killed mid-run, the camera gives no more frames: the worker says `down` within a
    second, instead of replaying what the socket still held."""
    camera, queue, stop, worker = sampled_stream(fps=10)
    before = take_for(queue, 3)
    camera.kill()
    killed = time.time()
    after = take_for(queue, 5, until=lambda f: f.image is None)
    stop.set()
    worker.join(5)
    assert len(before) >= 10 and all(f.image is not None for f, _ in before)
    down = next(f for f, _ in after if f.image is None)
    assert "no frame from source" in down.error
    assert down.wall_time - killed < 1.0
    assert all(camera.sent[frame_number(f.image)] <= killed
               for f, _ in after if f.image is not None)


def test_frames_missed_inside_a_run_of_reads_are_counted() -> None:
    """Frames that arrive while the worker is busy, between two reads of one run (a burst, or
    continuous sampling), are drops; frames between two samples are not."""
    camera = MjpegCamera(fps=20)
    reader = NewestFrameReader(open_capture(camera.url), timeout_s=5)
    try:
        first = reader.next_frame(follow=False)
        time.sleep(0.5)  # busy with the first frame
        second = reader.next_frame(follow=True)
        assert first is not None and second is not None
        missed = frame_number(second.image) - frame_number(first.image) - 1
        assert missed >= 5 and reader.take_drops() == missed
        assert reader.take_drops() == 0
        time.sleep(0.5)
        assert reader.next_frame(follow=False) is not None and reader.take_drops() == 0
    finally:
        reader.close()
        camera.kill()


@pytest.mark.slow
def test_continuous_sampling_slower_than_the_stream_drops_instead_of_lagging() -> None:
    """A scorer slower than the camera (here: frames taken every 0.3 s from a 20 fps stream):
    the frames taken stay fresh, and what could not be scored is counted as dropped."""
    camera = MjpegCamera(fps=20)
    queue, stop = FrameQueue(1), threading.Event()
    worker = CaptureWorker("cam0", camera.url, Sampling(continuous=True), queue, stop)
    worker.start()
    taken: list[tuple[Frame, float]] = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        time.sleep(0.3)  # scoring
        taken.extend((frame, time.time()) for frame in queue.take_all(0.0))
    stop.set()
    worker.join(5)
    camera.kill()
    assert len(taken) >= 8
    for frame, took in taken[1:]:
        assert took - camera.sent[frame_number(frame.image)] < 0.05 + 0.2
    left = len(queue.take_all(0.0))
    assert queue.drops()["cam0"] == worker.health().frames_read - len(taken) - left > 0


def test_the_queue_says_how_many_frames_wait_per_camera() -> None:
    queue, stop = FrameQueue(2), threading.Event()
    for n, camera in enumerate(["cam0", "cam0", "cam0", "cam1"]):
        queue.put(Frame(camera, None, 0.0, float(n), 0.0, n), block=False, stop=stop)
    assert queue.depths() == {"cam0": 2, "cam1": 1}  # cam0's share is full: its oldest dropped
    assert queue.drops() == {"cam0": 1}
    assert len(queue.take_all(0.1)) == 3
    assert queue.depths() == {"cam0": 0, "cam1": 0}
