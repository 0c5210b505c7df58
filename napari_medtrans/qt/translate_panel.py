"""Translate panel: pick input volume(s), a model, device and sampling settings; run in a worker; cancel.

The panel knows volumes only by name: the host (napari dock widget or the app) lists them with
:meth:`TranslatePanel.set_sources` and hands them over through ``volume_provider(name) -> Volume`` when Run is
pressed. Results leave through signals; the host decides how to show them.

Finished slices leave through ``partial_ready`` at most every ``PARTIAL_INTERVAL_MS`` (adjacent blocks joined
into one), each from its own event-loop turn; blocks still waiting when the result arrives give way to it
(``translated`` replaces the preview), except in a run that has not shown any yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import translation
from .input_picker import InputPicker
from .job_panel import JobPanelMixin
from .workers import Job, start_job

__all__ = ["TranslatePanel", "progress_text"]

_LOAD_FILE = "load file..."
#: Partial results are handed on at most this often (ms): every hand-over refreshes and repaints the host's
#: preview, which costs tens of milliseconds of GUI time in napari.
PARTIAL_INTERVAL_MS = 150
#: The translation thread starts this much later (ms), so the host first paints its new preview (see
#: ``start_job``'s ``delay_ms``); building the model meanwhile doubled napari's first-paint stall.
START_DELAY_MS = 100


def _describe_job(job, choice):
    return choice, translation.describe_choice(job, choice)


def progress_text(done: int, total: int, first: tuple[float, int] | None, now: float) -> str:
    """"12 of 80 slices, about 40 s left": the rate measured from the first report on (so the model's loading does
    not count), no estimate before a second report."""
    text = f"{done} of {total} slices"
    if first is None or done <= first[1] or done >= total:
        return text
    left = (now - first[0]) / (done - first[1]) * (total - done)
    return text + (f", about {left:.0f} s left" if left < 90 else f", about {left / 60:.0f} min left")


class TranslatePanel(JobPanelMixin, QWidget):
    """Inputs, model, device, steps, samples, seed; Run / Cancel with a progress bar."""

    started = Signal(object)  # TranslateRequest
    partial_ready = Signal(object, int, int, int, object)  # request, axis, start, stop, block
    translated = Signal(object, object)  # request, TranslationResult
    stopped = Signal(object, str)  # request, "cancelled" (finished slices kept, marked partial) or "failed"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.volume_provider: Callable[[str], object] | None = None
        self.job: Job | None = None
        self._extra_files: list[str] = []
        self._specs: dict[tuple[str, str | None], dict] = {}  # by (file or method, direction)
        self._request = None
        self._partials: list = []
        self._last_partial = 0.0
        self._shown_partial = False  # whether this run has handed on a partial yet
        self._first_progress: tuple[float, int] | None = None  # (time, slices done) at the first report
        # Partials go out from a timer, not from the slot that receives them: the host's refresh then runs in
        # its own event-loop turn instead of adding to the progress update and repaint queued with it.
        self._partial_timer = QTimer(self)
        self._partial_timer.setSingleShot(True)
        self._partial_timer.timeout.connect(self._flush_partials)

        self.model_box = QComboBox()
        self.spec_label = QLabel("")
        self.spec_label.setWordWrap(True)
        self.device_box = QComboBox()
        self.device_box.addItems(translation.device_choices())
        self.steps_box = QSpinBox(minimum=0, maximum=10000, value=0, specialValueText="model default")
        self.samples_box = QSpinBox(minimum=1, maximum=64, value=1)
        self.seed_box = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.run_button = QPushButton("Run")
        self._make_job_widgets("Copy a model or weights file into the local weights store (checked against the "
                               "published sha256 when the file is a known download)")

        self.inputs = InputPicker()
        self.override_box = QCheckBox("Take the inputs as the model's contrasts (their labels are wrong)")
        self.override_box.setToolTip(
            "A volume whose header, sidecar, DICOM tags or file name name another contrast than the model takes is "
            "refused. Tick this only when that label is wrong; the synthetic image's provenance records it.")
        form = QFormLayout()
        form.addRow("Model", self.model_box)
        form.addRow("", self.spec_label)
        form.addRow("Device", self.device_box)
        form.addRow("Steps", self.steps_box)
        form.addRow("Samples", self.samples_box)
        form.addRow("Seed", self.seed_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.inputs)
        layout.addWidget(self.override_box)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.import_button.clicked.connect(self.import_weights)
        self.model_box.activated.connect(self._on_model_activated)
        self.model_box.currentIndexChanged.connect(self._on_model_changed)
        self.refresh_models()

    # -- sources and models ---------------------------------------------------------------------------
    def set_sources(self, items: Sequence[tuple[str, str | None]]) -> None:
        """The volumes that can be inputs, as ``(name, modality)``; keeps the current picks where possible."""
        self.inputs.set_sources(items)

    def refresh_models(self) -> None:
        """Re-list shipped, stored, loaded and registered models."""
        current = self.current_choice()
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for choice in translation.model_choices(self._extra_files):
            self.model_box.addItem(choice.label, choice)
        self.model_box.addItem(_LOAD_FILE, None)
        index = 0
        if current is not None:
            found = [i for i in range(self.model_box.count()) if self.model_box.itemData(i) == current]
            index = found[0] if found else 0
        self.model_box.setCurrentIndex(index)
        self.model_box.blockSignals(False)
        self._on_model_changed(index)

    def add_model_file(self, path: str | Path) -> None:
        """Add a model file to the list and select it (what "load file..." does after its dialog)."""
        path = str(path)
        if path not in self._extra_files:
            self._extra_files.append(path)
        self.refresh_models()
        wanted = Path(path).resolve()
        for i in range(self.model_box.count()):
            choice = self.model_box.itemData(i)
            # a shipped model given by another spelling of its path is the listed entry (listed once)
            if choice is not None and choice.kind == "checkpoint" and choice.direction is None \
                    and (choice.value == path or Path(choice.value).resolve() == wanted):
                self.model_box.setCurrentIndex(i)
                break

    def import_weights(self) -> Job | None:
        """"Import weights...": pick a file, copy it into the store in a worker, then list it (see
        :mod:`.weights_import`); the status line says where it went."""

        def done(dest, message):
            self.refresh_models()
            self.status.setText(message)

        return self._import_weights(done)

    def current_choice(self) -> translation.ModelChoice | None:
        return self.model_box.currentData()

    def _on_model_activated(self, index: int) -> None:
        choice = self.model_box.itemData(index)
        if choice is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Load a translator model", "", "Models (*.safetensors *.pt *.pth *.ts *.torchscript *.onnx)")
            if path:
                self.add_model_file(path)
            else:
                self.model_box.setCurrentIndex(0)
        elif choice.kind == "method":
            self._describe(choice)  # builds the network: only when the user picks it

    def _on_model_changed(self, _index: int) -> None:
        choice = self.current_choice()
        if choice is None:
            return
        spec = self._specs.get((choice.value, choice.direction))
        if spec is not None:
            self._apply_spec(spec)
        elif choice.kind == "checkpoint":
            self._describe(choice)
        else:
            self.spec_label.setText(f"{choice.value}: untrained, random weights (for trying the pipeline)")
            self.samples_box.setEnabled(True)  # unknown until the network is built
            self.steps_box.setEnabled(True)

    def _describe(self, choice) -> None:
        self.spec_label.setText("reading model ...")
        job = start_job(_describe_job, choice, name=f"reading model {choice.label}")
        job.succeeded.connect(self._on_spec)
        job.failed.connect(self._on_spec_failed)

    def _on_spec(self, described) -> None:
        choice, spec = described
        self._specs[(choice.value, choice.direction)] = spec
        if self.current_choice() == choice:
            self._apply_spec(spec)

    def _on_spec_failed(self, _exc) -> None:
        self.spec_label.setText("model cannot be read (see the message)")

    def _apply_spec(self, spec: dict) -> None:
        kind = "stochastic" if spec.get("stochastic") else "deterministic"
        maps = ", ".join(spec.get("maps") or []) or "none"
        self.spec_label.setText(
            f"{spec['method']}: {'+'.join(spec['inputs'])} -> {'+'.join(spec['outputs'])}, {kind}, maps: {maps}")
        self.samples_box.setEnabled(bool(spec.get("stochastic")))
        if not spec.get("stochastic"):
            self.samples_box.setValue(1)
        self.steps_box.setEnabled(spec.get("default_steps") is not None)
        self.inputs.set_modalities(tuple(spec["inputs"]))

    def output_modalities(self) -> tuple[str, ...]:
        """The contrasts the chosen model makes, once its spec is known (empty before); hosts use it to pick
        the reference a result will be compared with."""
        choice = self.current_choice()
        spec = self._specs.get((choice.value, choice.direction)) if choice is not None else None
        return tuple(spec.get("outputs") or ()) if spec else ()

    def input_names(self) -> dict[str, str]:
        """The picked source name for every input modality."""
        return self.inputs.names()

    # -- running --------------------------------------------------------------------------------------
    def request(self) -> translation.TranslateRequest:
        """The request the current settings describe (volumes fetched through ``volume_provider``)."""
        from ..core.errors import MedtransError

        choice = self.current_choice()
        names = self.input_names()
        if choice is None:
            raise MedtransError("no model chosen")
        missing = [m for m, n in names.items() if not n]
        if missing or self.volume_provider is None:
            raise MedtransError(f"choose an input volume for {', '.join(missing) or 'the model'}")
        inputs = {m: (n, self.volume_provider(n)) for m, n in names.items()}
        return translation.TranslateRequest(
            choice=choice, inputs=inputs, device=self.device_box.currentText(),
            steps=self.steps_box.value() or None, samples=self.samples_box.value(), seed=self.seed_box.value(),
            override_modality=self.override_box.isChecked())

    def run(self) -> Job | None:
        """Start a translation with the current settings; returns its job (None when one is running)."""
        from .workers import report_error

        if self._busy():
            return None
        try:
            request = self.request()
        except Exception as exc:  # noqa: BLE001 - bad settings are shown like worker errors
            report_error(exc, "translation")
            return None
        self._request = request
        self._drop_partials()
        self._shown_partial = False
        self._first_progress = None
        self.progress.setValue(0)
        self.status.setText(f"translating {request.input_label} with {request.choice.label} ...")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.started.emit(request)
        job = self._watch(start_job(translation.run_translation, request, name="translation",
                                    delay_ms=START_DELAY_MS))
        job.partial.connect(self._on_partial)  # a bound method too (see _watch)
        return job

    def _on_progress(self, done: int, total: int) -> None:
        # QProgressBar.setValue repaints at once; with updates off it only schedules a paint, which joins the
        # next window repaint (a separate one costs a full-window composition beside napari's GL canvas).
        self.progress.setUpdatesEnabled(False)
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.progress.setUpdatesEnabled(True)
        text = progress_text(done, total, self._first_progress, time.perf_counter())
        if self._first_progress is None:
            self._first_progress = (time.perf_counter(), done)
        if text and self._busy():
            self.status.setText(text)

    def _on_partial(self, payload) -> None:
        self._partials.append(payload)
        if not self._partial_timer.isActive():
            since = (time.perf_counter() - self._last_partial) * 1000
            self._partial_timer.start(int(max(1, PARTIAL_INTERVAL_MS - since)))

    def _flush_partials(self) -> None:
        """Hand on the partial results received since the last hand-over, adjacent blocks joined."""
        pending, self._partials = self._partials, []
        self._last_partial = time.perf_counter()
        for axis, start, stop, block in translation.merge_partials(pending):
            self._shown_partial = True
            self.partial_ready.emit(self._request, axis, start, stop, block)

    def _drop_partials(self) -> None:
        self._partial_timer.stop()
        self._partials = []

    def _done(self, result) -> None:
        # Partials not yet handed on give way to the result, which replaces the preview in the same turn:
        # refreshing the preview first made the end of a run napari's longest stall. A run too short to have
        # shown any still shows its slices first.
        if self._shown_partial:
            self._drop_partials()
        else:
            self._partial_timer.stop()
            self._flush_partials()
        self._reset_buttons()
        self.status.setText(f"done in {result.seconds:.1f} s on {result.device}")
        self.translated.emit(self._request, result)

    def _on_cancelled(self, _exc) -> None:
        self._stopped("cancelled")

    def _on_failed(self, _exc) -> None:
        self._stopped("failed")

    def _stopped(self, what: str) -> None:
        if what == "cancelled":  # the finished slices reach the host, which keeps them (marked partial)
            self._partial_timer.stop()
            self._flush_partials()
        else:
            self._drop_partials()
        self._reset_buttons()
        self.progress.setValue(0)
        self.status.setText(f"translation {what}")
        self.stopped.emit(self._request, what)

    def _reset_buttons(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.job is not None:
            self.destroyed.disconnect(self.job.cancel)
