"""napari reader for NIfTI files, DICOM files and DICOM folders (one layer per series).

``get_reader`` returns None for anything it cannot read, without raising (napari then asks other readers).
Reading happens in napari's thread, as napari's reader contract requires; the plugin's widgets load and
translate in workers.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._layers import volume_layer_data

__all__ = ["get_reader", "read_volumes"]

#: Files looked at when deciding whether a folder holds DICOM (a huge archive is not walked to its end).
_MAX_FILES_CHECKED = 500
_LABEL_WORDS = ("label", "seg", "mask", "aseg", "parc")


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _has_dicom(folder: Path) -> bool:
    checked = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if _is_dicom_file(Path(root) / name):
                return True
            checked += 1
            if checked >= _MAX_FILES_CHECKED:
                return False
    return False


def get_reader(path):
    """The reader function for ``path`` (a .nii/.nii.gz file, a DICOM file or folder), else None."""
    from ..core.io import is_nifti_path

    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        return read_volumes if _has_dicom(p) else None
    if p.is_file() and (is_nifti_path(p) or _is_dicom_file(p)):
        return read_volumes
    return None


def _nifti_layer(path: Path) -> tuple:
    import numpy as np

    from ..core.io import read_nifti

    volume = read_nifti(path)
    stem = path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem
    integral = bool(np.all(volume.data == np.rint(volume.data))) and float(volume.data.max(initial=0)) < 2**15
    if integral and any(w in stem.lower() for w in _LABEL_WORDS):
        return volume_layer_data(volume, stem, layer_type="labels")
    return volume_layer_data(volume, stem)


def read_volumes(path) -> list[tuple]:
    """Layers for a NIfTI file, or one layer per series of a DICOM file or folder."""
    from ..core.io import is_nifti_path
    from ..core.io.dicom import read_dicom_series, scan_dicom

    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(path)
    if p.is_file() and is_nifti_path(p):
        return [_nifti_layer(p)]
    if p.is_file():
        volume = read_dicom_series(p)
        header = volume.source.dicom_datasets[0] if volume.source.dicom_datasets else {}
        return [volume_layer_data(volume, _series_name(volume, str(header.get("SeriesDescription", "") or "")))]
    layers = []
    for series in scan_dicom(p):
        volume = read_dicom_series(series.files, series_uid=series.series_instance_uid)
        layers.append(volume_layer_data(volume, _series_name(volume, series.description or p.name)))
    return layers


def _series_name(volume, description: str) -> str:
    return description or volume.modality or "DICOM"
