"""What the translate and segment panels share about the one job they run at a time: the Cancel and "Import
weights..." buttons, the progress bar and status line, wiring the job's signals to the panel's slots, Cancel, and
importing weights (see :mod:`.weights_import`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton

from .workers import Job

__all__ = ["JobPanelMixin"]


class JobPanelMixin:
    """Mixed into a panel (a ``QWidget``) with a ``job`` attribute, a ``status`` label and the slots
    ``_on_progress(done, total)``, ``_done(value)``, ``_on_cancelled(exc)`` and ``_on_failed(exc)``."""

    job: Job | None

    def _make_job_widgets(self, import_tip: str) -> None:
        """``cancel_button`` (disabled until a job runs), ``import_button`` ("Import weights..." with the tooltip
        ``import_tip``), the ``progress`` bar and the ``status`` line; the panel lays them out and connects them."""
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.import_button = QPushButton("Import weights...")
        self.import_button.setToolTip(import_tip)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)

    def _busy(self) -> bool:
        """Whether a job of this panel is running (a new one does not start, Cancel stops it)."""
        return self.job is not None and self.job.running

    def _watch(self, job: Job) -> Job:
        """Connect ``job`` to the panel's slots, stop it when the panel is closed, and make it ``self.job``."""
        # Bound methods, not lambdas: Qt drops these connections when the panel is deleted mid-run.
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._done)
        job.cancelled.connect(self._on_cancelled)
        job.failed.connect(self._on_failed)
        self.destroyed.connect(job.cancel)  # a panel closed mid-run stops its job
        self.job = job
        return job

    def cancel(self) -> None:
        if self._busy():
            self.job.cancel()
            self.status.setText("cancelling ...")

    def _import_weights(self, done: Callable[[Path, str], None]) -> Job | None:
        """Pick a file and import it into the weights store in a worker; ``done(dest, message)`` on success."""
        from .weights_import import pick_and_import

        job = pick_and_import(self, done)
        if job is not None:
            self.status.setText("importing ...")
        return job
