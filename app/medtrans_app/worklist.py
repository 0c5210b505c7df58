"""The worklist: cases to read (NIfTI files, DICOM files or folders, subject folders); loading in a worker.

A *case* is one path. A NIfTI file or a DICOM series gives one volume; a folder gives every NIfTI file in it
and every DICOM series under it. :func:`load_case` does the reading without Qt (it runs as a job).
"""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

__all__ = ["load_case", "Worklist"]


def _nifti_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _copy_of_a_series(vol, series) -> bool:
    """Whether an acquired NIfTI volume is the same scan as one of the DICOM ``series`` beside it (the same
    contrast and grid size): a subject folder written with both (``medtrans phantom --dicom``, a converted
    archive) then shows each scan once, as its DICOM series, which carries the study for export."""
    if getattr(vol, "synthetic", False) or not vol.modality:
        return False
    shape = sorted(vol.shape)
    for s in series:
        if s.modality != vol.modality or not s.headers:
            continue
        h = s.headers[0]
        frames = int(getattr(h, "NumberOfFrames", 0) or 0) or s.n_files
        if sorted((int(getattr(h, "Rows", 0)), int(getattr(h, "Columns", 0)), frames)) == shape:
            return True
    return False


def load_case(job, path: str | os.PathLike) -> list[tuple[str, object]]:
    """Read every volume of a case as ``[(name, Volume), ...]`` (a job function; progress per volume).

    A NIfTI file that is a copy of a DICOM series in the same folder (same contrast, same grid size) is left out:
    each scan is shown once.

    Raises
    ------
    VolumeReadError
        Nothing readable there (the message names the path).
    """
    from napari_medtrans.core import io
    from napari_medtrans.core.errors import NoDicomError, NotAVolumeError

    p = Path(path)
    if p.is_file() and io.is_nifti_path(p):
        return [(_nifti_name(p), io.load(p))]
    if not p.exists():
        raise NotAVolumeError("no such file or folder", p)
    if p.is_file():
        vol = io.load(p)
        return [(vol.modality or p.stem, vol)]
    out: list[tuple[str, object]] = []
    niftis = sorted(q for q in p.iterdir() if q.is_file() and io.is_nifti_path(q))
    try:
        series = list(io.list_series(p))
    except NoDicomError:
        series = []
    total = len(niftis) + len(series)
    for i, q in enumerate(niftis):
        vol = io.load(q)
        if not _copy_of_a_series(vol, series):
            out.append((_nifti_name(q), vol))
        if job is not None:
            job.report_progress(i + 1, total)
    for j, s in enumerate(series):
        vol = io.load(p, series_uid=s.series_instance_uid)
        name = s.description or vol.modality or f"series {j + 1}"
        out.append((name if name not in dict(out) else f"{name} ({j + 1})", vol))
        if job is not None:
            job.report_progress(len(niftis) + j + 1, total)
    if not out:
        raise NotAVolumeError("the folder holds no NIfTI file and no DICOM series", p)
    return out


class Worklist(QWidget):
    """A list of case paths with Add buttons; ``case_chosen(str)`` when one is activated."""

    case_chosen = Signal(str)
    add_files_requested = Signal()
    add_folder_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setToolTip("Cases: double-click or Enter to open")
        files = QPushButton("Add files...")
        folder = QPushButton("Add folder...")
        buttons = QHBoxLayout()
        buttons.addWidget(files)
        buttons.addWidget(folder)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.list)
        files.clicked.connect(self.add_files_requested)
        folder.clicked.connect(self.add_folder_requested)
        self.list.itemActivated.connect(lambda item: self.case_chosen.emit(item.data(Qt.ItemDataRole.UserRole)))

    def add(self, path: str | os.PathLike, label: str | None = None) -> QListWidgetItem:
        """Add a case (once); returns its item."""
        path = os.fspath(path)
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == path:
                return self.list.item(i)
        item = QListWidgetItem(label or os.path.basename(path.rstrip(os.sep)) or path)
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setToolTip(path)
        self.list.addItem(item)
        return item

    def paths(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]
