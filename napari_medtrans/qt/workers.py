"""The one place where napari-medtrans makes threads, and the one place where their errors reach the user.

Long work (loading, translating, computing metrics, exporting) runs as a :class:`Job`: a function called in a
``QThread`` with the job as its first argument, so it can report progress, hand out partial results and ask
whether it should stop. Everything the function reports arrives in the GUI thread as Qt signals, in order.
The thread starts from the event loop, never inside :func:`start_job`: a caller that connects to the job's
signals right after ``start_job`` returns receives every report, however fast the job is.

Errors. An exception raised by a job function is passed to :func:`report_error` in the GUI thread before
``failed`` is emitted. :func:`report_error` turns it into one readable line (:func:`error_message`: the
message of a :class:`~napari_medtrans.core.errors.MedtransError` as it is, which names the file and the
problem; for anything else the job's name, the exception type and its text) and hands it to the error handler:
napari notifications in the plugin, a message box in the app, or a log record when no handler is set
(:func:`set_error_handler`). A cancelled translation
(:class:`~napari_medtrans.core.errors.TranslationCancelled`) is not an error: it emits ``cancelled``.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QThread, QTimer, Signal, Slot

from ..core.errors import MedtransError, TranslationCancelled

__all__ = [
    "Job",
    "start_job",
    "report_error",
    "error_message",
    "set_error_handler",
    "active_jobs",
    "cancel_all",
]

_log = logging.getLogger("napari_medtrans")

ErrorHandler = Callable[[str, BaseException], Any]
_handler: ErrorHandler | None = None
_ACTIVE: set["Job"] = set()


def error_message(exc: BaseException, context: str | None = None) -> str:
    """One line for people: a MedtransError's own message (it names the file), else ``context: Type: text``."""
    if isinstance(exc, MedtransError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    where = f"{context} failed: " if context else ""
    return f"{where}{type(exc).__name__}: {text}"


def set_error_handler(handler: ErrorHandler | None) -> ErrorHandler | None:
    """Make ``handler(message, exception)`` receive every worker error; returns the previous handler."""
    global _handler
    previous, _handler = _handler, handler
    return previous


def report_error(exc: BaseException, context: str | None = None) -> str:
    """Show ``exc`` to the user through the error handler (call from the GUI thread); returns the message."""
    message = error_message(exc, context)
    if not isinstance(exc, MedtransError):
        _log.error("%s\n%s", message, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    handler = _handler
    if handler is None:
        _log.error(message)
        return message
    try:
        handler(message, exc)
    except Exception:  # noqa: BLE001 - a broken handler must not hide the original error
        _log.exception("error handler failed while reporting: %s", message)
    return message


class _Thread(QThread):
    def __init__(self, job: "Job"):
        super().__init__()
        self._job = job

    def run(self) -> None:  # runs in the new thread
        job = self._job
        try:
            value = job._fn(job, *job._args, **job._kwargs)
        except TranslationCancelled as exc:
            job._cancelled_internal.emit(exc)
        except BaseException as exc:  # noqa: BLE001 - every error goes to the one sink
            job._failed_internal.emit(exc)
        else:
            job._succeeded_internal.emit(value)


class Job(QObject):
    """A function running in its own thread. Create with :func:`start_job`.

    Signals (all delivered in the GUI thread, ``finished`` always last):
    ``progress(done, total)``, ``partial(payload)``, ``succeeded(value)``, ``failed(exception)`` (already
    reported), ``cancelled(exception)`` and ``finished()``.
    """

    progress = Signal(int, int)
    partial = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal(object)
    finished = Signal()

    _succeeded_internal = Signal(object)
    _failed_internal = Signal(object)
    _cancelled_internal = Signal(object)

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, name: str):
        super().__init__()
        self.name = name
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._succeeded_internal.connect(self._on_succeeded)
        self._failed_internal.connect(self._on_failed)
        self._cancelled_internal.connect(self._on_cancelled)
        self._thread = _Thread(self)
        self._started = False
        self._thread.finished.connect(self._on_thread_finished)

    # -- called from the job function (any thread) ----------------------------------------------------
    def should_cancel(self) -> bool:
        """True once :meth:`cancel` was called; pass as ``should_cancel`` to the engine."""
        return self._cancel.is_set()

    def report_progress(self, done: int, total: int) -> None:
        """Emit ``progress(done, total)``; pass as ``progress`` to the engine."""
        self.progress.emit(int(done), int(total))

    def report_partial(self, payload: Any) -> None:
        """Emit ``partial(payload)`` (e.g. finished slices to show while the job runs)."""
        self.partial.emit(payload)

    # -- called from the GUI thread -------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop; it stops at its next ``should_cancel()`` check."""
        self._cancel.set()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the thread ends (for shutdown and tests); True when it ended in time."""
        self._start()  # a delayed start has not happened yet: the job must still run (and end) before this returns
        return bool(self._thread.wait(int(timeout_ms)))

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    @Slot(object)
    def _on_succeeded(self, value: Any) -> None:
        self.result = value
        self.succeeded.emit(value)

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        self.error = exc
        report_error(exc, self.name)
        self.failed.emit(exc)

    @Slot(object)
    def _on_cancelled(self, exc: BaseException) -> None:
        self.cancelled.emit(exc)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._thread.wait()  # run() has returned; let the thread exit before the QThread can be collected
        self._done.set()
        _ACTIVE.discard(self)
        self.finished.emit()


def start_job(fn: Callable[..., Any], *args: Any, name: str = "task", delay_ms: int = 0, **kwargs: Any) -> Job:
    """Run ``fn(job, *args, **kwargs)`` in a new thread and return the :class:`Job` (call from the GUI thread).

    Parameters
    ----------
    fn : callable
        The work. It receives the job first and may call ``job.report_progress``, ``job.report_partial``
        and ``job.should_cancel``. Its return value arrives through ``succeeded``.
    name : str
        Words for error messages ("translation", "export", ...).
    delay_ms : int
        Start the thread this many milliseconds later: the GUI first repaints what the caller just changed (a
        new napari layer's first paint takes tens of milliseconds) instead of sharing the interpreter with the
        job's Python-heavy start (building a model). 0 starts it at the event loop's next turn.

    Returns
    -------
    Job
        Connect to its signals right after this call. The thread is started from the event loop, never
        before this call returns, so no report can be emitted before the caller has connected (a signal
        emitted with nothing connected is lost). ``job.wait()`` starts a job still waiting for its turn.
    """
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or delay_ms < 0:
        raise ValueError(f'Argument "delay_ms" must be a non-negative integer, got {delay_ms!r}.')
    job = Job(fn, args, kwargs, name)
    _ACTIVE.add(job)  # keeps the job and its thread alive until the thread ends
    QTimer.singleShot(delay_ms, job, job._start)
    return job


def active_jobs() -> list[Job]:
    """Jobs whose threads have not finished yet."""
    return list(_ACTIVE)


def cancel_all(wait_ms: int = 10000) -> bool:
    """Ask every job to stop and wait for their threads (on shutdown); True when all ended in time."""
    jobs = list(_ACTIVE)
    for job in jobs:
        job.cancel()
    return all(job.wait(wait_ms) for job in jobs)
