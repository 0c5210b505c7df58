"""qt/workers.py: jobs run off the GUI thread, report in order, cancel, and send every error to one sink."""

from __future__ import annotations

import threading
import time

import pytest

from napari_medtrans.core.errors import NotAVolumeError, TranslationCancelled
from napari_medtrans.qt import workers


@pytest.fixture
def messages():
    got: list[tuple[str, BaseException]] = []
    previous = workers.set_error_handler(lambda message, exc: got.append((message, exc)))
    yield got
    workers.set_error_handler(previous)


def test_job_runs_in_another_thread_and_reports_in_order(qtbot, messages):
    seen = []

    def work(job, n):
        seen.append(threading.current_thread() is threading.main_thread())
        for i in range(1, n + 1):
            job.report_progress(i, n)
            job.report_partial(i * 10)
        return "done"

    job = workers.start_job(work, 3, name="counting")
    progress, partial = [], []
    job.progress.connect(lambda d, t: progress.append((d, t)))
    job.partial.connect(partial.append)
    with qtbot.waitSignal(job.finished, timeout=10000):
        pass
    assert seen == [False]
    assert progress == [(1, 3), (2, 3), (3, 3)] and partial == [10, 20, 30]
    assert job.result == "done" and not job.running and messages == []
    assert job not in workers.active_jobs()


def test_a_slot_connected_right_after_start_job_misses_no_report(qtbot, messages):
    """The thread starts from the event loop, after the caller has connected: early reports cannot be lost.

    The job reports at once and then signals ``reported``; the test waits for that signal *before* connecting,
    which on a start-at-once design makes the job's first reports certain to precede the connection.
    """
    reported = threading.Event()

    def eager(job):
        for i in range(1, 4):
            job.report_progress(i, 3)
            job.report_partial(i)
        reported.set()
        return "done"

    job = workers.start_job(eager, name="eager")
    early = reported.wait(0.5)  # a start-at-once job has reported everything by now
    progress, partial, succeeded = [], [], []
    job.progress.connect(lambda d, t: progress.append((d, t)))
    job.partial.connect(partial.append)
    job.succeeded.connect(succeeded.append)
    with qtbot.waitSignal(job.finished, timeout=10000):
        pass
    assert progress == [(1, 3), (2, 3), (3, 3)] and partial == [1, 2, 3] and succeeded == ["done"]
    assert not early and messages == []  # it started only once the event loop ran


def test_errors_reach_the_one_sink_with_the_core_message(qtbot, messages):
    def fail(job):
        raise NotAVolumeError("is neither a NIfTI file nor a DICOM image", "/data/scan.txt")

    job = workers.start_job(fail, name="loading")
    failed = []
    job.failed.connect(failed.append)
    with qtbot.waitSignal(job.finished, timeout=10000):
        pass
    assert [m for m, _ in messages] == ["/data/scan.txt: is neither a NIfTI file nor a DICOM image"]
    assert isinstance(failed[0], NotAVolumeError) and job.error is failed[0]


def test_unexpected_errors_name_the_job_and_the_exception(qtbot, messages):
    job = workers.start_job(lambda job: 1 / 0, name="inspection")
    with qtbot.waitSignal(job.finished, timeout=10000):
        pass
    assert messages[0][0] == "inspection failed: ZeroDivisionError: division by zero"


def test_a_broken_handler_does_not_hide_the_error(qtbot, caplog):
    def broken(message, exc):
        raise RuntimeError("handler bug")

    previous = workers.set_error_handler(broken)
    try:
        job = workers.start_job(lambda job: [][1], name="export")
        with qtbot.waitSignal(job.finished, timeout=10000):
            pass
    finally:
        workers.set_error_handler(previous)
    assert "export failed: IndexError" in caplog.text and "handler bug" in caplog.text


def test_cancel_stops_the_job_and_is_not_an_error(qtbot, messages):
    started = threading.Event()

    def slow(job):
        done = 0
        while True:
            started.set()
            if job.should_cancel():
                raise TranslationCancelled(done, 100)
            time.sleep(0.01)
            done += 1

    job = workers.start_job(slow, name="translation")
    cancelled = []
    job.cancelled.connect(cancelled.append)
    qtbot.waitUntil(started.is_set, timeout=5000)  # the thread starts from the event loop
    t0 = time.perf_counter()
    job.cancel()
    with qtbot.waitSignal(job.finished, timeout=10000):
        pass
    assert time.perf_counter() - t0 < 2.0
    assert isinstance(cancelled[0], TranslationCancelled) and messages == []


def test_cancel_all_waits_for_every_thread(qtbot):
    def wait_for_cancel(job):
        while not job.should_cancel():
            time.sleep(0.005)

    jobs = [workers.start_job(wait_for_cancel, name=f"job {i}") for i in range(3)]
    assert all(j in workers.active_jobs() for j in jobs)
    assert workers.cancel_all(wait_ms=5000)
    qtbot.waitUntil(lambda: not workers.active_jobs(), timeout=5000)


def test_shared_qt_package_never_imports_napari():
    """The standalone app uses these widgets without napari: importing them must not pull napari in."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "import napari_medtrans.qt.workers, napari_medtrans.qt.translate_panel, napari_medtrans.qt.inspect_panel\n"
        "import napari_medtrans.qt.export_panel, napari_medtrans.qt.plots, napari_medtrans.qt.inspection\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "napari" not in loaded and "vispy" not in loaded
    assert "PySide6" in loaded  # it is the Qt side


def test_a_delayed_job_starts_from_the_event_loop(qtbot, messages):
    ran = []
    job = workers.start_job(lambda job: ran.append(threading.current_thread().name) or "ok", name="later",
                            delay_ms=100)
    time.sleep(0.3)  # no event-loop turn yet: the thread must not have started
    assert ran == [] and job.running
    with qtbot.waitSignal(job.finished, timeout=10000):
        pass
    assert len(ran) == 1 and job.result == "ok" and messages == []


def test_wait_runs_a_job_whose_start_is_still_pending(qtbot, messages):
    ran = []
    job = workers.start_job(lambda job: ran.append(1), name="later", delay_ms=600_000)
    assert job.wait(10000) and ran == [1]
    qtbot.waitUntil(lambda: not job.running, timeout=10000)  # finished arrives through the event loop


@pytest.mark.parametrize("delay", [-1, 1.5, True])
def test_start_delay_must_be_a_non_negative_int(delay):
    with pytest.raises(ValueError, match='"delay_ms"'):
        workers.start_job(lambda job: None, delay_ms=delay)
