"""Export panel: a (synthetic) volume to a DICOM series of its source study, or to NIfTI, in a worker.

The DICOM source is the volume's own (when it was translated from a DICOM series) unless the user picks a
DICOM folder; with neither the series goes into a new study. De-identification follows
:mod:`napari_medtrans.core.io.dicom_export`, and so do its refusals: an acquired image or a map, and a source study
of another patient or another study, are refused unless the matching box is ticked (the message names it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from .workers import Job, report_error, start_job

__all__ = ["ExportPanel", "export_volume", "FORMATS"]

FORMATS = {"dicom": "DICOM series (folder)", "nifti": "NIfTI (.nii.gz)"}


#: Keyword of export_dicom_series that lifts a refusal -> the box that sets it here.
_BOXES = {
    "allow_non_synthetic": "Export acquired images and maps",
    "allow_maps": "Export acquired images and maps",
    "allow_other_study": "Allow a source study of another patient",
}


def export_volume(job, volume, fmt: str, out: str, source: str | None, deidentify: bool, *,
                  allow_non_synthetic: bool = False, allow_other_study: bool = False) -> list[str]:
    """Write ``volume`` as ``fmt`` ("dicom" or "nifti") to ``out``; a job function returning the paths.

    ``allow_non_synthetic`` lets an acquired image or a map go out as DICOM (unmarked, or marked as a map);
    ``allow_other_study`` lets it join a source study of another patient or study. Refusals name the box.
    """
    from ..core.errors import ExportError
    from ..core.io import write_nifti
    from ..core.io.dicom_export import export_dicom_series

    if fmt == "nifti":
        path = out if out.lower().endswith((".nii", ".nii.gz")) else out + ".nii.gz"
        return [str(write_nifti(volume, path))]
    try:
        result = export_dicom_series(volume, out, source=source or None, deidentify=deidentify,
                                     allow_non_synthetic=allow_non_synthetic, allow_maps=allow_non_synthetic,
                                     allow_other_study=allow_other_study)
    except ExportError as exc:
        option = exc.data.get("option")
        if option in _BOXES:
            reason = exc.reason.replace(f"pass {option}=True", f"tick '{_BOXES[option]}'")
            reason = reason.replace(f"Pass {option}=True", f"Tick '{_BOXES[option]}'")
            reason = reason.replace(", or synthetic=True if it is a synthetic image made by another tool", "")
            raise ExportError(reason, exc.path, **exc.data) from exc
        raise
    return [str(p) for p in result.files]


class ExportPanel(QWidget):
    """Volume, format, DICOM source, de-identify, output path; Export."""

    exported = Signal(list)  # paths written

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.volume_provider: Callable[[str], object] | None = None
        self.job: Job | None = None
        self.volume_box = QComboBox()
        self.format_box = QComboBox()
        for key, label in FORMATS.items():
            self.format_box.addItem(label, key)
        self.source_label = QLabel("")
        self.source_label.setWordWrap(True)
        self.source_edit = QLineEdit()
        self.source_edit.setPlaceholderText("DICOM folder of the source study (optional)")
        source_button = QPushButton("...")
        self.deidentify_box = QCheckBox("De-identify (remove patient identifiers, new UIDs)")
        self.allow_non_synthetic_box = QCheckBox(_BOXES["allow_non_synthetic"])
        self.allow_non_synthetic_box.setToolTip("Export a volume that is not a synthetic MR image: an acquired "
                                                "scan (unmarked) or an error/trust map (marked as a map)")
        self.allow_other_study_box = QCheckBox(_BOXES["allow_other_study"])
        self.allow_other_study_box.setToolTip("Export into the source study even when the volume was made from "
                                              "another patient's or another study's images")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder (DICOM) or file (NIfTI)")
        out_button = QPushButton("...")
        self.export_button = QPushButton("Export")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        source_row, out_row = QHBoxLayout(), QHBoxLayout()
        source_row.addWidget(self.source_edit)
        source_row.addWidget(source_button)
        out_row.addWidget(self.out_edit)
        out_row.addWidget(out_button)
        form = QFormLayout(self)
        form.addRow("Volume", self.volume_box)
        form.addRow("Format", self.format_box)
        form.addRow("Source", self.source_label)
        form.addRow("", source_row)
        form.addRow("", self.deidentify_box)
        form.addRow("", self.allow_non_synthetic_box)
        form.addRow("", self.allow_other_study_box)
        form.addRow("Output", out_row)
        form.addRow(self.export_button)
        form.addRow(self.status)

        source_button.clicked.connect(self._pick_source)
        out_button.clicked.connect(self._pick_out)
        self.export_button.clicked.connect(self.export)
        self.volume_box.currentIndexChanged.connect(lambda _i: self._describe_source())
        self.format_box.currentIndexChanged.connect(lambda _i: self._describe_source())
        self.source_edit.textChanged.connect(lambda _t: self._describe_source())

    def set_sources(self, names: Sequence[str], synthetic: Sequence[str] = ()) -> None:
        """Volumes that can be exported (synthetic first). A synthetic volume that was not offered before (what was
        just made) becomes the pick; otherwise the current pick stays when possible, else the first synthetic."""
        current = self.volume_box.currentText()
        before = {self.volume_box.itemText(i) for i in range(self.volume_box.count())}
        new = [n for n in synthetic if n in names and n not in before]
        self.volume_box.blockSignals(True)
        self.volume_box.clear()
        self.volume_box.addItems(list(names))
        pick = new[-1] if new else current if current in names else next((n for n in synthetic if n in names), None)
        if pick is not None and self.volume_box.findText(pick) >= 0:
            self.volume_box.setCurrentIndex(self.volume_box.findText(pick))
        self.volume_box.blockSignals(False)
        self._describe_source()

    def _describe_source(self) -> None:
        dicom = self.format_box.currentData() == "dicom"
        self.source_edit.setEnabled(dicom)
        self.deidentify_box.setEnabled(dicom)
        self.allow_non_synthetic_box.setEnabled(dicom)
        self.allow_other_study_box.setEnabled(dicom)
        if not dicom:
            self.source_label.setText("NIfTI keeps the geometry; the header says SYNTHETIC for synthetic volumes")
            return
        if self.source_edit.text().strip():
            self.source_label.setText("into the study of the DICOM folder below")
            return
        name = self.volume_box.currentText()
        volume = None
        if name and self.volume_provider is not None:
            try:
                volume = self.volume_provider(name)
            except Exception:  # noqa: BLE001 - the layer may be gone; the label just says so
                volume = None
        own = volume is not None and volume.source is not None and volume.source.kind == "dicom"
        self.source_label.setText("into the study of the DICOM series it was made from" if own
                                  else "no DICOM source: a new study (or pick a DICOM folder)")

    def _pick_source(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "DICOM folder of the source study")
        if folder:
            self.source_edit.setText(folder)

    def _pick_out(self) -> None:
        if self.format_box.currentData() == "dicom":
            path = QFileDialog.getExistingDirectory(self, "Empty folder for the DICOM series")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "NIfTI file", "", "NIfTI (*.nii.gz *.nii)")
        if path:
            self.out_edit.setText(path)

    def export(self) -> Job | None:
        """Start the export in a worker (None when one is running or the settings are incomplete)."""
        from ..core.errors import MedtransError

        if self.job is not None and self.job.running:
            return None
        try:
            name, out = self.volume_box.currentText(), self.out_edit.text().strip()
            if not name or self.volume_provider is None:
                raise MedtransError("choose a volume to export")
            if not out:
                raise MedtransError("choose where to write the export")
            volume = self.volume_provider(name)
        except Exception as exc:  # noqa: BLE001 - shown like worker errors
            report_error(exc, "export")
            return None
        fmt = self.format_box.currentData()
        source = self.source_edit.text().strip() or None
        self.export_button.setEnabled(False)
        self.status.setText("exporting ...")
        self.job = start_job(export_volume, volume, fmt, str(Path(out).expanduser()), source,
                             self.deidentify_box.isChecked(), name="export",
                             allow_non_synthetic=self.allow_non_synthetic_box.isChecked(),
                             allow_other_study=self.allow_other_study_box.isChecked())
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_finished)
        return self.job

    def _on_failed(self, _exc) -> None:
        self.status.setText("export failed (see the message)")

    def _on_finished(self) -> None:
        self.export_button.setEnabled(True)

    def _on_done(self, paths: list) -> None:
        where = Path(paths[0]).parent if len(paths) > 1 else Path(paths[0])
        self.status.setText(f"wrote {len(paths)} file(s) to {where}")
        self.exported.emit(list(paths))
