"""Segment panel: SAM2 / MedSAM2 on the prompted slice(s) or propagated through the volume, the Table III
comparison of source, real and synthetic images, and DICOM SEG export; every job in a worker with cancel.

The panel knows volumes by name. Its host (napari dock widget or the app) sets ``volume_provider(name)`` and
``prompt_provider(volume) -> list[SlicePrompt]`` (the host's clicks and boxes in frame coordinates, see
:mod:`napari_medtrans.segment.frames`), lists volumes with :meth:`SegmentPanel.set_sources` and shows the
masks that arrive through ``segmented`` and ``evaluated``. The comparison uses the host's prompts (read on the
ground truth's grid, which every compared image shares) when there are any, else boxes from the ground truth.
Models stay loaded between runs, with their embedding caches, so prompting the same volume again is fast.

The requests and job functions live in :mod:`~napari_medtrans.qt.segment_jobs` (re-exported here), the
comparison group in :mod:`~napari_medtrans.qt.segment_compare`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .segment_compare import NONE, CompareGroup, fill_box
from .segment_jobs import (
    EvaluateRequest,
    SegmenterPool,
    SegmentRequest,
    export_seg,
    has_own_series,
    run_evaluation,
    run_segmentation,
)
from .job_panel import JobPanelMixin
from .workers import Job, report_error, start_job

__all__ = ["SegmentPanel", "SegmentRequest", "EvaluateRequest", "SegmenterPool", "run_segmentation",
           "run_evaluation", "export_seg", "has_own_series", "NONE"]


class SegmentPanel(JobPanelMixin, QWidget):
    """Image, model, device; Segment slice(s) / Propagate / Cancel; Compare (Table III); Export SEG."""

    started = Signal(object)  # request
    segmented = Signal(object, object)  # SegmentRequest, SegmentationResult
    evaluated = Signal(object, object)  # EvaluateRequest, SegEvalReport
    stopped = Signal(object, str)  # request, "cancelled" or "failed"

    def __init__(self, parent: QWidget | None = None, *, pool: SegmenterPool | None = None):
        from ..segment import DIRECTIONS, model_names
        from .translation import device_choices

        super().__init__(parent)
        self.volume_provider: Callable[[str], Any] | None = None
        self.prompt_provider: Callable[[Any], list] | None = None
        #: Optional host hook: ``edited_mask_provider(name)`` returns the label Volume the user edited for image
        #: ``name`` (exported as a manual segmentation), or None to export the model's result.
        self.edited_mask_provider: Callable[[str], Any] | None = None
        self.pool = pool or SegmenterPool()
        self.job: Job | None = None
        self.results: dict[str, tuple[Any, Any]] = {}  # image name -> (Volume, SegmentationResult)
        self._request = None
        self._running = False

        self.image_box = QComboBox()
        self.model_box = QComboBox()
        self.model_box.addItems(model_names())
        self.device_box = QComboBox()
        self.device_box.addItems(device_choices())
        self.direction_box = QComboBox()
        self.direction_box.addItems(list(DIRECTIONS))
        self.component_box = QCheckBox("keep the largest connected component")
        self.slice_button = QPushButton("Segment slice(s)")
        self.slice_button.setToolTip("Segment each prompted slice on its own (Shift+S in napari)")
        self.propagate_button = QPushButton("Propagate")
        self.propagate_button.setToolTip("Segment the prompted slice and propagate through the volume (Shift+P)")
        self.export_button = QPushButton("Export SEG...")
        self.export_button.setEnabled(False)
        self._make_job_widgets("Copy a SAM2.1 or MedSAM2 checkpoint you downloaded into the local weights store "
                               "(checked against the published sha256)")
        self.choose_default_model()

        form = QFormLayout()
        form.addRow("Image", self.image_box)
        form.addRow("Model", self.model_box)
        form.addRow("Device", self.device_box)
        form.addRow("Direction", self.direction_box)
        form.addRow("", self.component_box)
        buttons = QHBoxLayout()
        for b in (self.slice_button, self.propagate_button, self.cancel_button):
            buttons.addWidget(b)

        self.compare_group = CompareGroup()
        self.compare = self.compare_group.boxes
        self.labels_edit = self.compare_group.labels_edit
        self.eval_mode_box = self.compare_group.mode_box
        self.evaluate_button = self.compare_group.evaluate_button
        self.table = self.compare_group.table

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.export_button)
        layout.addWidget(self.import_button)
        layout.addWidget(self.compare_group)
        layout.addStretch(1)

        self.slice_button.clicked.connect(lambda: self.segment("slices"))
        self.propagate_button.clicked.connect(lambda: self.segment("propagate"))
        self.cancel_button.clicked.connect(self.cancel)
        self.evaluate_button.clicked.connect(self.evaluate)
        self.export_button.clicked.connect(self._pick_export)
        self.import_button.clicked.connect(self.import_weights)
        self.image_box.currentTextChanged.connect(
            lambda name: self.export_button.setEnabled(name in self.results))

    def choose_default_model(self) -> str:
        """Pick MedSAM2 when its weights are in the store, else the shipped segmenter, and say which in the status.

        Called at start and after an import, so imported weights take over from the shipped network.
        """
        from ..segment import SHIPPED, default_model

        name = default_model()
        self.model_box.setCurrentText(name)
        if name == SHIPPED:
            self.status.setText(
                f"No SAM2/MedSAM2 weights imported: segmenting with the shipped {SHIPPED} (a small network trained "
                "on phantom tumours only). 'Import weights...' adds MedSAM2 or SAM2.1.")
        else:
            self.status.setText(f"{name}: weights found in the store.")
        return name

    def import_weights(self):
        """"Import weights...": the segmenters' weights (SAM2.1, MedSAM2) into the store, in a worker."""
        from ..segment import SHIPPED

        def done(dest, message):
            if self.model_box.currentText() == SHIPPED:
                self.choose_default_model()  # MedSAM2's weights take over once imported
            self.status.setText(message)

        return self._import_weights(done)

    # -- sources ------------------------------------------------------------------------------------------
    def set_sources(self, names: Sequence[str], labels: Sequence[str] = ()) -> None:
        """Images that can be segmented and compared, and label maps that can be the ground truth."""
        fill_box(self.image_box, names, False)
        self.compare_group.set_sources(names, labels)
        self.export_button.setEnabled(self.image_box.currentText() in self.results)

    # -- running ------------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        # True from the start until the result (or the cancellation or failure) has been delivered: the
        # thread itself may still be winding down, but a new job can start.
        return self._running

    def segment(self, mode: str = "slices") -> Job | None:
        """Segment the chosen image with the host's prompts; ``mode`` "slices" or "propagate"."""
        from ..core.errors import MedtransError

        if self._busy():
            return None
        try:
            name = self.image_box.currentText()
            if not name or self.volume_provider is None:
                raise MedtransError("choose an image to segment")
            volume = self.volume_provider(name)
            prompts = self.prompt_provider(volume) if self.prompt_provider is not None else []
            if not prompts:
                raise MedtransError("add a prompt first: a positive point or a box on the object")
        except Exception as exc:  # noqa: BLE001 - bad settings are shown like worker errors
            report_error(exc, "segmentation")
            return None
        request = SegmentRequest(name, volume, list(prompts), mode, self.direction_box.currentText(),
                                 self.model_box.currentText(), self.device_box.currentText(),
                                 self.component_box.isChecked())
        verb = "propagating" if mode == "propagate" else f"segmenting {len(prompts)} slice(s) of"
        return self._start(run_segmentation, request, f"{verb} {name} with {request.model} ...", "segmentation")

    def evaluate(self) -> Job | None:
        """Run the Table III comparison with the chosen images and ground truth.

        The host's prompts (``prompt_provider``, read on the ground truth's grid) are used for every image when
        there are any; otherwise the prompts are derived from the ground truth.
        """
        if self._busy():
            return None
        try:
            images, truth, labels = self.compare_group.picks(self.volume_provider)
            prompts = list(self.prompt_provider(truth)) if self.prompt_provider is not None else []
        except Exception as exc:  # noqa: BLE001
            report_error(exc, "comparison")
            return None
        request = EvaluateRequest(images, truth, labels, self.eval_mode_box.currentData(),
                                  self.model_box.currentText(), self.device_box.currentText(), prompts or None)
        return self._start(run_evaluation, request,
                           f"comparing {len(images)} image(s) with {_describe_prompts(request)} ...", "comparison")

    def _start(self, fn, request, text: str, name: str) -> Job:
        self._request = request
        self._running = True
        self.progress.setValue(0)
        self.status.setText(text)
        for b in (self.slice_button, self.propagate_button, self.evaluate_button):
            b.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.started.emit(request)
        job = self._watch(start_job(fn, self.pool, request, name=name))
        job.finished.connect(self._on_finished)
        return job

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _done(self, value) -> None:
        request = self._request
        self._release_buttons()
        if isinstance(request, EvaluateRequest):
            from ..segment.evaluate import format_report

            self.table.setPlainText(format_report([value]))
            self.status.setText(f"compared {len(request.images)} image(s) with {value.model}, "
                                f"{_describe_prompts(request)}")
            self.evaluated.emit(request, value)
            return
        self.results[request.image] = (request.volume, value)
        self.export_button.setEnabled(self.image_box.currentText() in self.results)
        self.status.setText(f"{len(value.slices)} slice(s) in {value.seconds:.1f} s "
                            f"({value.embeddings_computed} embedded, {value.embeddings_reused} from the cache)")
        self.segmented.emit(request, value)

    def _on_cancelled(self, _exc) -> None:
        self._release_buttons()
        self.status.setText("cancelled")
        self.progress.setValue(0)
        self.stopped.emit(self._request, "cancelled")

    def _on_failed(self, _exc) -> None:
        self._release_buttons()
        self.status.setText("failed (see the message)")
        self.progress.setValue(0)
        self.stopped.emit(self._request, "failed")

    def _release_buttons(self) -> None:
        self._running = False
        for b in (self.slice_button, self.propagate_button, self.evaluate_button):
            b.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_finished(self) -> None:
        job = self.sender()  # the job that ended (a newer one may already be running)
        if job is not None:
            try:
                self.destroyed.disconnect(job.cancel)
            except (TypeError, RuntimeError):
                pass

    # -- export -------------------------------------------------------------------------------------------
    def _pick_export(self) -> None:
        name = self.image_box.currentText()
        if name not in self.results:
            return
        volume, _ = self.results[name]
        if has_own_series(volume):
            out, _ = QFileDialog.getSaveFileName(self, "Save DICOM SEG", "seg.dcm", "DICOM (*.dcm)")
        else:
            out = QFileDialog.getExistingDirectory(self, "Folder for the image series and its SEG (empty)")
        if out:
            edited = self.edited_mask_provider(name) if self.edited_mask_provider is not None else None
            self.export(name, out, mask=edited)

    def export(self, name: str, out: str, mask: Any = None) -> Job | None:
        """Export a segmentation of image ``name`` as DICOM SEG to ``out`` in a worker.

        Without ``mask``, the last model result for ``name`` (one segment, the model as its algorithm). With
        ``mask``, that label Volume on the image's grid, e.g. a Labels layer the host holds (edited by hand or
        with several label values: one segment per value, recorded as a manual segmentation).
        """
        if mask is None:
            if name not in self.results:
                return None
            volume, result = self.results[name]
            mask, algorithm = result.to_volume(volume), result.model
        else:
            try:
                volume = self.results[name][0] if name in self.results else self.volume_provider(name)
            except Exception as exc:  # noqa: BLE001 - a vanished image is shown like worker errors
                report_error(exc, "SEG export")
                return None
            algorithm = None
        job = start_job(export_seg, volume, mask, str(out), algorithm, name="SEG export")
        job.succeeded.connect(lambda path: self.status.setText(f"wrote {path}"))
        return job


def _describe_prompts(request: EvaluateRequest) -> str:
    """Which prompts a comparison uses, in words."""
    if request.prompt_source == "user":
        return f"your prompts on {len(request.prompts)} slice(s)"
    return "prompts from the ground truth"
