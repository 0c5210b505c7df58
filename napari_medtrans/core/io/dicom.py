"""DICOM series reading with pydicom: scan a folder, group by series, stack slices into a Volume.

What the reader does
--------------------
* :func:`scan_dicom` reads headers only (parsed from the file's first 256 kB in memory and stopping before
  the pixel data; longer headers are parsed from the file with large elements deferred), skips files that
  are not DICOM or not images (counted in ``.skipped``), notes DICOM files it cannot parse (``.unreadable``),
  and groups the images by SeriesInstanceUID.
* :func:`read_dicom_series` picks one series (raising :class:`MultipleSeriesError` when the choice is
  ambiguous), sorts its slices by position along the slice normal (the cross product of the
  ImageOrientationPatient cosines; never by file name or InstanceNumber), checks that every slice has the
  same size, orientation and pixel spacing, applies RescaleSlope/RescaleIntercept, and builds the affine
  from ImagePositionPatient, ImageOrientationPatient and PixelSpacing (oblique stacks included), converted
  from DICOM LPS to RAS.
* Voxel ``(i, j, k)`` of the Volume is column ``i``, row ``j`` of the ``k``-th slice in increasing position
  along the normal: ``data[:, :, k] == pixel_array_k.T``.
* Multi-frame Enhanced MR files (per-frame and shared functional groups) read into the same Volume as the
  equivalent single-frame series. Compressed transfer syntaxes are decoded by pydicom (RLE natively; JPEG,
  JPEG-LS and JPEG 2000 through the installed pylibjpeg / pyjpegls plugins).

Decisions
---------
* Uneven slice spacing raises :class:`UnevenSpacingError` (gaps listed in ``.spacings``) unless
  ``allow_uneven=True``; then the volume is read as-is with the mean spacing along k, and the true slice
  positions are kept in ``volume.provenance["slice_positions_mm"]``. Nothing is resampled.
* Two slices at the same position (several echoes, time points or stacks in one series) raise
  :class:`DicomReadError`: the reader does not guess which one to keep.
* A one-slice series reads as a volume of shape ``(columns, rows, 1)`` whose k spacing is
  SpacingBetweenSlices, else SliceThickness, else 1 mm.
* Only DICOM Part 10 files (128-byte preamble and "DICM") are read; other files are skipped and counted.
* A DICOM file that cannot be parsed anywhere in the scanned files raises :class:`DicomReadError` naming it,
  because it might be a slice of the requested series and a missing end slice cannot be detected otherwise.
  So does a file or folder that cannot be read at all (no permission, a symbolic link loop): it is reported as
  unreadable, never counted as "not DICOM".
* Numbers that would make the volume meaningless are refused with the file and the tag named, before anything is
  allocated: a RescaleSlope or RescaleIntercept that is not a finite number (NaN would give an all-NaN volume),
  a rescale that sends stored values past the float32 range, PixelSpacing that is not positive, a
  NumberOfFrames below 1, and a series whose headers claim more than :data:`MAX_VOXELS` voxels.

Where the code lives
--------------------
This module holds :func:`read_dicom_series` and re-exports the rest of the public API. Scanning a folder and
grouping series is in :mod:`.dicom_scan`, reading one header in :mod:`.dicom_header`, the frames, their checks,
their order and the affine in :mod:`.dicom_geometry`, the pixels in :mod:`.dicom_pixels`, and the wording of
the errors about unreadable files in :mod:`.dicom_errors`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import DicomReadError, MultipleSeriesError, NotAVolumeError
from ..volume import SourceInfo, Volume, normalise_modality
from .dicom_errors import _raise_no_dicom, _unreadable_error
from .dicom_geometry import _check_consistent, _check_spacing, _frames_of, _series_affine, _sorted_frames
from .dicom_header import _Blobs, _fast
from .dicom_pixels import _read_pixels
from .dicom_scan import SeriesInfo, SeriesList, _check_single, _collect_files, _scan_files, guess_modality, scan_dicom

__all__ = ["SeriesInfo", "SeriesList", "scan_dicom", "read_dicom_series", "guess_modality"]

#: Bytes of whole small files kept between the header scan and the pixel read of one series.
_BLOB_BUDGET = 512 * 1024 * 1024


def read_dicom_series(
    path_or_files: str | os.PathLike | Sequence[str | os.PathLike],
    series_uid: str | None = None,
    modality: str | None = None,
    allow_uneven: bool = False,
) -> Volume:
    """Read one DICOM series into a :class:`Volume`.

    Parameters
    ----------
    path_or_files : path-like or list of path-like
        A folder, a list of files, or one DICOM file (then the whole series of that file is read from the
        files in its folder).
    series_uid : str, optional
        SeriesInstanceUID to read when several series are present.
    modality : str, optional
        Overrides the contrast guessed from SeriesDescription/ProtocolName/SequenceName.
    allow_uneven : bool
        Read unevenly spaced slices as they are (see the module notes) instead of raising.

    Returns
    -------
    Volume
        float32 data indexed (column, row, slice), RAS affine, the source headers in
        ``volume.source.dicom_datasets`` (slice order, no pixel data), ``synthetic`` set when the
        SyntheticData (0008,001C) attribute is "YES".

    Raises
    ------
    NoDicomError, MultipleSeriesError, DicomReadError, GeometryError, UnevenSpacingError, NotAVolumeError
        Each names the file or folder and the problem.
    """
    files, where, single, bad_dirs = _collect_files(path_or_files)
    if single is not None:
        _check_single(single)
    blobs = _Blobs(_BLOB_BUDGET)
    series = _scan_files(files, where, blobs)
    series.unreadable[:0] = bad_dirs
    chosen = _choose_series(series, where, single, series_uid)
    keep = {f: blobs[f] for f in chosen.files if f in blobs}
    blobs.clear()  # other series' bytes can go now
    return _read_series(chosen, where, modality=modality, allow_uneven=allow_uneven, blobs=keep)


def _choose_series(series: SeriesList, where: str, single: str | None, series_uid: str | None) -> SeriesInfo:
    """The series to read: the one holding the single file asked for, the one with ``series_uid``, or the only one.

    Unreadable files anywhere in the scan, no series, several series without a choice, or an unknown UID raise.
    """
    if single is not None:
        key = os.fspath(single)
        bad = dict(series.unreadable)
        if key in bad:
            raise _unreadable_error([(key, bad[key])])
        own = [s for s in series if key in s.files]
        if not own:
            raise NotAVolumeError("is neither a NIfTI file nor a DICOM image", key)
        if series_uid is None:
            series_uid = own[0].series_instance_uid
    if series.unreadable:
        raise _unreadable_error(series.unreadable)
    if not series:
        _raise_no_dicom(series, where)
    if series_uid is None:
        if len(series) > 1:
            raise MultipleSeriesError(where, series)
        return series[0]
    matches = [s for s in series if s.series_instance_uid == str(series_uid)]
    if not matches:
        known = ", ".join(f"{s.series_instance_uid} ({s.description or 'no description'})" for s in series)
        raise DicomReadError(f"no series with SeriesInstanceUID {series_uid}; found: {known}", where)
    return matches[0]


def _read_series(
    info: SeriesInfo, where: str, *, modality: str | None, allow_uneven: bool, blobs: dict | None = None
) -> Volume:
    """Read the frames of one scanned series: check and sort them, build the affine, read the pixels."""
    frames = [fr for path, ds in zip(info.files, info.headers) for fr in _frames_of(path, ds)]
    rows, cols = _check_consistent(frames)
    frames, dist = _sorted_frames(frames, where)
    provenance = _check_spacing(frames, dist, where, allow_uneven)
    affine = _series_affine(frames, where)
    data = _read_pixels(frames, rows, cols, blobs or {}, where)
    return _volume_of(info, frames, data, affine, where, modality, provenance)


def _volume_of(info: SeriesInfo, frames: list, data: np.ndarray, affine: np.ndarray, where: str,
               modality: str | None, provenance: dict) -> Volume:
    """The Volume of a series read: its voxels and affine, the source headers in slice order, the contrast."""
    datasets, seen = [], set()
    for fr in frames:
        if id(fr.ds) not in seen:
            seen.add(id(fr.ds))
            datasets.append(fr.ds)
    first = datasets[0]
    synthetic = any(str(_fast(ds, "SyntheticData", "")).upper() == "YES" for ds in datasets)
    source = SourceInfo(
        kind="dicom",
        path=where,
        dicom_datasets=datasets,
        series_instance_uid=info.series_instance_uid,
        study_instance_uid=str(first.get("StudyInstanceUID", "") or "") or None,
    )
    provenance["dicom_files"] = len(info.files)
    guessed = None if modality else guess_modality(first)
    return Volume(
        data=data,
        affine=affine,
        modality=normalise_modality(modality) if modality else guessed,
        source=source,
        synthetic=synthetic,
        provenance=provenance,
        modality_evidence="override" if modality else ("dicom" if guessed else None),
    )
