"""Inspect panel: synthetic against reference (optionally inside a mask, optionally against a trust map).

Like the translate panel it knows volumes by name (``set_sources``, ``volume_provider``), and their contrasts
(``(name, modality)`` items): the panel shows the contrast of both picks, picks by default a reference of the
synthetic image's contrast (never the image itself; "(none)" when there is none), and refuses to compare
different contrasts (:func:`~napari_medtrans.core.compare.check_comparable`) unless the override is ticked.
Compute runs :func:`~napari_medtrans.qt.inspection.inspect_volumes` in a worker; ``inspected(Inspection)`` tells the host
to show the error maps; ``slice_requested(int)`` asks it to move to a slice (a click on the plot). The host
reports the slice it shows with :meth:`InspectPanel.set_current_slice`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..core.compare import check_comparable, modality_text, pick_reference, same_modality
from ..core.errors import ModalityMismatchError
from .inspection import METRICS, Inspection, inspect_volumes
from .plots import SliceMetricPlot, TrustPlot
from .workers import Job, report_error, start_job

__all__ = ["InspectPanel", "NONE"]

NONE = "(none)"


def _fmt(values: dict | None) -> str:
    if not values:
        return "-"
    return f"PSNR {values['psnr']:.2f} dB   SSIM {values['ssim']:.4f}   MAE {values['mae']:.4f}"


def _inspect(job, synthetic, reference, mask, trust, trust_name, allow_mismatch=False) -> Inspection:
    return inspect_volumes(synthetic, reference, mask, trust, trust_name, job=job, allow_mismatch=allow_mismatch)


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
        self._modalities: dict[str, str | None] = {}
        self._references: list[tuple[str, str | None]] = []
        self._auto = {"synthetic": "", "reference": ""}  # what the panel picked itself (re-picked as data changes)
        self.synthetic_box, self.reference_box = QComboBox(), QComboBox()
        self.mask_box, self.trust_box = QComboBox(), QComboBox()
        self.metric_box = QComboBox()
        for key, label in METRICS.items():
            self.metric_box.addItem(label, key)
        self.compute_button = QPushButton("Compute")
        self.contrast_label = QLabel("-")
        self.warning_label = QLabel("")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #d08000")
        self.override_box = QCheckBox("Compare different contrasts anyway")
        self.override_box.setToolTip("Error maps and metrics across contrasts measure the contrast difference, "
                                     "not the translation")
        self.volume_label, self.slice_label = QLabel("-"), QLabel("-")
        for label in (self.volume_label, self.slice_label):
            label.setWordWrap(True)
        self.slice_plot, self.trust_plot = SliceMetricPlot(), TrustPlot()

        form = QFormLayout()
        form.addRow("Synthetic", self.synthetic_box)
        form.addRow("Reference", self.reference_box)
        form.addRow("Contrasts", self.contrast_label)
        form.addRow(self.override_box)
        form.addRow(self.warning_label)
        form.addRow("Mask", self.mask_box)
        form.addRow("Map vs error", self.trust_box)
        self.trust_box.setToolTip("A translator's map (the TSM texture/structure map, or the spread across "
                                  "diffusion samples) set against the error: does the error grow where it is high?")
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
        self.synthetic_box.currentIndexChanged.connect(self._on_synthetic_changed)
        self.reference_box.currentIndexChanged.connect(lambda _i: self._show_contrasts())
        self.override_box.toggled.connect(lambda _on: self._show_contrasts())
        self.metric_box.currentIndexChanged.connect(lambda _i: self._plot())
        self.slice_plot.slice_clicked.connect(self.slice_requested)

    # -- sources --------------------------------------------------------------------------------------
    def set_sources(self, synthetic: Sequence, reference: Sequence, masks: Sequence[str],
                    trust: Sequence[str]) -> None:
        """Names offered in each list, synthetic and reference items as ``(name, modality)`` (a plain name's
        modality is asked of ``volume_provider``).

        The first synthetic entry is the default; the default reference is the first of the synthetic image's
        contrast (see :func:`~napari_medtrans.core.compare.pick_reference`). Picks someone else made are kept
        while they exist (a reference only while it may be compared with the synthetic image).
        """
        syn_items, ref_items = self._items(synthetic), self._items(reference)
        self._modalities = dict(syn_items + ref_items)
        self._references = ref_items
        before = self.synthetic_box.currentText()
        self._fill(self.synthetic_box, syn_items)
        if before not in dict(syn_items) or before == self._auto["synthetic"]:
            pick = syn_items[0][0] if syn_items else ""
            self.synthetic_box.setCurrentIndex(self.synthetic_box.findText(pick))
            self._auto["synthetic"] = pick
        self.synthetic_box.blockSignals(False)
        self._fill(self.reference_box, ref_items, optional=True)
        self._choose_reference()
        self.reference_box.blockSignals(False)
        for box, names in ((self.mask_box, masks), (self.trust_box, trust)):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems([NONE] + list(names))
            keep = box.findText(current)
            if keep >= 0 and current != NONE:
                box.setCurrentIndex(keep)
            elif names:
                box.setCurrentIndex(1)
            box.blockSignals(False)
        self._show_contrasts()

    def _items(self, entries: Sequence) -> list[tuple[str, str | None]]:
        return [(e, self._provided_modality(e)) if isinstance(e, str) else (str(e[0]), e[1]) for e in entries]

    def _provided_modality(self, name: str) -> str | None:
        if self.volume_provider is None:
            return None
        try:
            return getattr(self.volume_provider(name), "modality", None)
        except Exception:  # noqa: BLE001 - a name the host cannot resolve has no known contrast
            return None

    @staticmethod
    def _fill(box: QComboBox, items: list[tuple[str, str | None]], optional: bool = False) -> None:
        """Refill ``box`` (signals stay blocked: the caller unblocks), keeping its text when still offered."""
        current = box.currentText()
        box.blockSignals(True)
        box.clear()
        if optional:
            box.addItem(NONE)
        for name, modality in items:
            box.addItem(name)
            box.setItemData(box.count() - 1, f"{name}: {modality_text(modality)}", Qt.ItemDataRole.ToolTipRole)
        keep = box.findText(current)
        box.setCurrentIndex(keep if keep >= 0 else (0 if box.count() else -1))

    def modality_of(self, name: str) -> str | None:
        """The contrast of an offered image (None when unknown)."""
        return self._modalities.get(name)

    def _choose_reference(self) -> None:
        """Keep the reference someone picked while it may be compared; else pick the default."""
        syn = self.synthetic_box.currentText()
        ref = self.reference_box.currentText()
        same = same_modality(self.modality_of(syn), self.modality_of(ref))
        keep = (ref not in ("", NONE, syn) and ref != self._auto["reference"] and ref in dict(self._references)
                and (same is not False or self.override_box.isChecked()))
        if keep:
            return
        pick = pick_reference((syn, self.modality_of(syn)), self._references) if syn else None
        self.reference_box.setCurrentIndex(max(0, self.reference_box.findText(pick or NONE)))
        self._auto["reference"] = pick or NONE

    def _on_synthetic_changed(self, _index: int) -> None:
        self.reference_box.blockSignals(True)
        self._choose_reference()
        self.reference_box.blockSignals(False)
        self._show_contrasts()

    def _show_contrasts(self) -> None:
        """Both picks' contrasts, and what is wrong with comparing them (before anything is computed)."""
        syn, ref = self.synthetic_box.currentText(), self.reference_box.currentText()
        if not syn:
            self.contrast_label.setText("-")
            self.warning_label.setText("")
            return
        ms = self.modality_of(syn)
        if ref in ("", NONE):
            self.contrast_label.setText(f"synthetic {modality_text(ms)}, no reference")
            self.warning_label.setText(
                f"no reference of the synthetic image's contrast ({ms}) is open" if ms else "")
            return
        mr = self.modality_of(ref)
        self.contrast_label.setText(f"synthetic {modality_text(ms)}, reference {modality_text(mr)}")
        try:
            notes = check_comparable(SimpleNamespace(modality=ms), SimpleNamespace(modality=mr),
                                     allow_mismatch=self.override_box.isChecked())
        except ModalityMismatchError as exc:
            notes = [f"refused: {exc.reason} (or tick the override)"]
        if syn == ref:
            notes.append("the reference is the synthetic image itself: the error is zero everywhere")
        self.warning_label.setText("\n".join(notes))

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
            allow = self.override_box.isChecked()
            warnings = check_comparable(synthetic, reference, allow_mismatch=allow)
            mask, _ = self._volume(self.mask_box)
            trust, trust_name = self._volume(self.trust_box)
        except Exception as exc:  # noqa: BLE001 - shown like worker errors
            if isinstance(exc, ModalityMismatchError):
                self.volume_label.setText("refused: different contrasts (see the message)")
            report_error(exc, "inspection")
            return None
        self.warning_label.setText("\n".join(warnings))
        self.compute_button.setEnabled(False)
        self.volume_label.setText("computing ...")
        name = trust_name.split(" of ")[0] if trust is not None else "tsm"
        self.job = start_job(_inspect, synthetic, reference, mask, trust, name, allow, name="inspection")
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
        self.warning_label.setText("\n".join(inspection.warnings))
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
