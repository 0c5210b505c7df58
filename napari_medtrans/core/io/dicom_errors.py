"""How the DICOM reader names what it cannot read, in its errors.

* :func:`_not_a_file`: why a path given to the reader is neither a regular file nor a folder.
* :func:`_unreadable_error`: the :class:`DicomReadError` for files or folders that could not be read or parsed
  (the first one named, the others counted).
* :func:`_raise_no_dicom`: the error for a scan that found no DICOM image.
"""

from __future__ import annotations

import os

from ..errors import DicomReadError, NoDicomError
from .paths import missing_reason


def _not_a_file(path: str) -> str:
    """Why ``path`` is neither a regular file nor a folder, in words."""
    if os.path.exists(path):
        return "is not a regular file or folder (a device, pipe or socket)"
    return missing_reason(path)


def _unreadable_error(unreadable: list[tuple[str, str]]) -> DicomReadError:
    """The error for the first of the unreadable files or folders, counting the others."""
    path, reason = unreadable[0]
    more = f" (and {len(unreadable) - 1} more unreadable files)" if len(unreadable) > 1 else ""
    if reason.startswith(("cannot be read", "folder cannot be read")):
        return DicomReadError(f"{reason}{more}", path)
    return DicomReadError(f"cannot read DICOM file: {reason}{more}", path)


def _raise_no_dicom(series, where: str):
    """Raise for a scan (a :class:`~napari_medtrans.core.io.dicom_scan.SeriesList`) that found no image."""
    if series.unreadable:
        raise _unreadable_error(series.unreadable)
    # A folder named like a NIfTI file was most likely meant to be one.
    what = "is a folder, not a NIfTI file, and " if where.lower().endswith((".nii", ".nii.gz")) else ""
    raise NoDicomError(
        f"{what}holds no DICOM image ({series.n_checked} files checked, {len(series.skipped)} not DICOM images)",
        where,
    )
