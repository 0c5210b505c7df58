"""Inspect panel: synthetic against reference (optionally inside a mask, optionally against a trust map).

Like the translate panel it knows volumes by name (``set_sources``, ``volume_provider``). Compute runs
:func:`~napari_medtrans.qt.inspection.inspect_volumes` in a worker; ``inspected(Inspection)`` tells the host
to show the error maps; ``slice_requested(int)`` asks it to move to a slice (a click on the plot). The host
reports the slice it shows with :meth:`InspectPanel.set_current_slice`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from .inspection import METRICS, Inspection, inspect_volumes
from .plots import SliceMetricPlot, TrustPlot
from .workers import Job, report_error, start_job

__all__ = ["InspectPanel", "NONE"]

NONE = "(none)"


def _fmt(values: dict | None) -> str:
    if not values:
        return "-"
    return f"PSNR {values['psnr']:.2f} dB   SSIM {values['ssim']:.4f}   MAE {values['mae']:.4f}"


def _inspect(job, synthetic, reference, mask, trust, trust_name) -> Inspection:
    return inspect_volumes(synthetic, reference, mask, trust, trust_name, job=job)


class InspectPanel(QWidget):
    """Pick synthetic, reference, mask and trust map; show metrics, a per-slice plot and trust vs error."""

    inspected = Signal(object)  # Inspection
    slice_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.volume_provider: Callable[[str], object] | None = None
        self.inspection: Inspection | None = None
        self.job: Job | None = None
        self.current_slice = 0
        self.synthetic_box, self.reference_box = QComboBox(), QComboBox()
        self.mask_box, self.trust_box = QComboBox(), QComboBox()
        self.metric_box = QComboBox()
        for key, label in METRICS.items():
            self.metric_box.addItem(label, key)
        self.compute_button = QPushButton("Compute")
        self.volume_label, self.slice_label = QLabel("-"), QLabel("-")
        for label in (self.volume_label, self.slice_label):
            label.setWordWrap(True)
        self.slice_plot, self.trust_plot = SliceMetricPlot(), TrustPlot()

        form = QFormLayout()
        form.addRow("Synthetic", self.synthetic_box)
        form.addRow("Reference", self.reference_box)
        form.addRow("Mask", self.mask_box)
        form.addRow("Trust map", self.trust_box)
        form.addRow(self.compute_button)
        form.addRow("Volume", self.volume_label)
        form.addRow("Slice", self.slice_label)
        form.addRow("Plot", self.metric_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.slice_plot)
        layout.addWidget(self.trust_plot)
        self.trust_plot.show_curve(None)

        self.compute_button.clicked.connect(self.compute)
        self.metric_box.currentIndexChanged.connect(lambda _i: self._plot())
        self.slice_plot.slice_clicked.connect(self.slice_requested)

    # -- sources --------------------------------------------------------------------------------------
    def set_sources(self, synthetic: Sequence[str], reference: Sequence[str], masks: Sequence[str],
                    trust: Sequence[str]) -> None:
        """Names offered in each list (first entries are the defaults); keeps the current picks when possible."""
        for box, names, optional in ((self.synthetic_box, synthetic, False), (self.reference_box, reference, False),
                                     (self.mask_box, masks, True), (self.trust_box, trust, True)):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems(([NONE] if optional else []) + list(names))
            keep = box.findText(current)
            if keep >= 0 and current != NONE:
                box.setCurrentIndex(keep)
            elif optional and names:
                box.setCurrentIndex(1)
            box.blockSignals(False)

    def _volume(self, box: QComboBox):
        name = box.currentText()
        if not name or name == NONE or self.volume_provider is None:
            return None, name
        return self.volume_provider(name), name

    # -- compute --------------------------------------------------------------------------------------
    def compute(self) -> Job | None:
        """Start the comparison in a worker (None when one is running or the choice is incomplete)."""
        from ..core.errors import MedtransError

        if self.job is not None and self.job.running:
            return None
        try:
            synthetic, _ = self._volume(self.synthetic_box)
            reference, _ = self._volume(self.reference_box)
            if synthetic is None or reference is None:
                raise MedtransError("choose a synthetic and a reference image to compare")
            mask, _ = self._volume(self.mask_box)
            trust, trust_name = self._volume(self.trust_box)
        except Exception as exc:  # noqa: BLE001 - shown like worker errors
            report_error(exc, "inspection")
            return None
        self.compute_button.setEnabled(False)
        self.volume_label.setText("computing ...")
        name = trust_name.split(" of ")[0] if trust is not None else "tsm"
        self.job = start_job(_inspect, synthetic, reference, mask, trust, name, name="inspection")
        self.job.succeeded.connect(self._on_result)
        self.job.finished.connect(self._on_finished)
        self.job.failed.connect(self._on_failed)
        return self.job

    def _on_finished(self) -> None:
        self.compute_button.setEnabled(True)

    def _on_failed(self, _exc) -> None:
        self.volume_label.setText("failed (see the message)")

    def _on_result(self, inspection: Inspection) -> None:
        self.inspection = inspection
        self.volume_label.setText(_fmt(inspection.metrics))
        self.trust_plot.show_curve(inspection.trust)
        self._plot()
        self.set_current_slice(self.current_slice)
        self.inspected.emit(inspection)

    # -- display --------------------------------------------------------------------------------------
    def _plot(self) -> None:
        if self.inspection is None:
            return
        key = self.metric_box.currentData()
        self.slice_plot.show_values(self.inspection.per_slice[key], METRICS[key], self.current_slice)

    def set_current_slice(self, index: int) -> None:
        """Show the metrics of slice ``index`` (along the inspection's axis) and move the plot's marker."""
        self.current_slice = int(index)
        if self.inspection is None:
            return
        values = self.inspection.slice_metrics(self.current_slice)
        self.slice_label.setText(f"{self.current_slice}: {_fmt(values)}" if values else "outside the volume")
        self.slice_plot.set_current(self.current_slice)
