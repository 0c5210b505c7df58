"""Volume input/output: ``load`` takes a NIfTI file or a DICOM file/folder/list and returns a Volume."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import NotAVolumeError
from ..volume import Volume
from .nifti import is_nifti_path, read_nifti, write_nifti
from .paths import check_output_path, missing_reason

__all__ = ["load", "save", "list_series", "read_nifti", "write_nifti", "is_nifti_path", "check_output_path"]


def load(
    path: str | os.PathLike | Sequence[str | os.PathLike], *,
    series_uid: str | None = None, modality: str | None = None, allow_uneven: bool = False,
) -> Volume:
    """Load a NIfTI file, a DICOM file, a DICOM folder, or a list of DICOM files as a :class:`Volume`.

    Parameters
    ----------
    path : path-like or list of path-like
        What to read.
    modality : str, optional
        Overrides the modality read from the file name or the DICOM header.
    series_uid, allow_uneven
        DICOM only, passed to :func:`.dicom.read_dicom_series`: which series to read when a folder holds several
        (otherwise :class:`MultipleSeriesError` lists them), and whether to read a series whose slices are
        unevenly spaced instead of raising ``UnevenSpacingError``.
    """
    if isinstance(path, (list, tuple)):
        source: list | Path = list(path)
    else:
        source = Path(path)
        if not source.exists():
            raise NotAVolumeError(missing_reason(source), source)
        if not (source.is_file() or source.is_dir()):
            raise NotAVolumeError("is not a regular file or folder (a device, pipe or socket)", source)
        if source.is_file() and is_nifti_path(source):
            return read_nifti(source, modality=modality)
    from .dicom import read_dicom_series

    return read_dicom_series(source, series_uid=series_uid, modality=modality, allow_uneven=allow_uneven)


def save(volume: Volume, path: str | os.PathLike) -> Path:
    """Save ``volume`` as NIfTI (the suffix must be .nii or .nii.gz)."""
    return write_nifti(volume, path)


def list_series(path: str | os.PathLike | Sequence[str | os.PathLike]):
    """The DICOM series found in a folder or list of files (see :class:`dicom.SeriesInfo`)."""
    from .dicom import scan_dicom

    return scan_dicom(path)
