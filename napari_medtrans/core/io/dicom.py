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
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import (
    DicomReadError,
    GeometryError,
    MultipleSeriesError,
    NoDicomError,
    NotAVolumeError,
    UnevenSpacingError,
)
from ..volume import MAX_VOXELS, SourceInfo, Volume, normalise_modality
from .orientation import affine_from_dicom, slice_normal
from .paths import missing_reason, os_reason

__all__ = ["SeriesInfo", "SeriesList", "scan_dicom", "read_dicom_series", "guess_modality"]

#: Threads that parse headers. Parsing is pure Python and holds the GIL; measured on 2 cores, more than one
#: thread only adds contention, so headers are parsed in the calling thread unless this is raised.
_HEADER_WORKERS = 1
#: Threads that decode compressed pixel data. Uncompressed slices are read in the calling thread: a seek, one
#: read and a scaled copy take ~0.3 ms, less than handing them to a pool costs (measured, 256x256 slices).
_PIXEL_WORKERS = min(8, os.cpu_count() or 2)
#: Bytes read at once to parse a header from memory (a typical MR header is 2-20 kB).
_HEAD_BYTES = 256 * 1024
#: Bytes of whole small files kept between the header scan and the pixel read of one series.
_BLOB_BUDGET = 512 * 1024 * 1024
#: Slices closer than this along the normal (mm) are taken to be at the same position.
_DUPLICATE_TOL_MM = 1e-3
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class SeriesInfo:
    """One DICOM series found by :func:`scan_dicom`.

    Attributes
    ----------
    series_instance_uid : str
        SeriesInstanceUID (0020,000E).
    description : str
        SeriesDescription, or ProtocolName when there is none ("" if neither).
    modality : str or None
        MR contrast guessed from the headers ("T1", "T1c", "T2", "FLAIR", "PD"), see :func:`guess_modality`.
    n_files : int
        Number of files in the series (an Enhanced MR series is usually one file with many frames).
    files : list of str
        The files, sorted by path.
    series_number : int or None
        SeriesNumber (0020,0011).
    study_instance_uid : str or None
        StudyInstanceUID (0020,000D).
    headers : list of pydicom.Dataset
        The parsed headers (no pixel data), in the order of ``files``.
    """

    series_instance_uid: str
    description: str
    modality: str | None
    n_files: int
    files: list[str]
    series_number: int | None = None
    study_instance_uid: str | None = None
    headers: list = dataclasses.field(default_factory=list, repr=False, compare=False)


class SeriesList(list):
    """A list of :class:`SeriesInfo` with what the scan skipped.

    Attributes
    ----------
    path : str
        The folder (or common folder of the files) scanned.
    n_checked : int
        Number of files looked at.
    skipped : list of str
        Files that are not DICOM images (other files, DICOMDIR, structured reports, ...).
    unreadable : list of tuple(str, str)
        DICOM files that could not be parsed, with the reason.
    """

    def __init__(self, items=(), *, path: str = "", n_checked: int = 0, skipped=(), unreadable=()):
        super().__init__(items)
        self.path = path
        self.n_checked = n_checked
        self.skipped = list(skipped)
        self.unreadable = list(unreadable)


# -- public API ---------------------------------------------------------------------------------------------


def scan_dicom(path_or_files: str | os.PathLike | Sequence[str | os.PathLike]) -> SeriesList:
    """Find the DICOM image series in a folder (searched recursively), next to a file, or in a list of files.

    Only headers are read. Files that are not DICOM are skipped quietly and counted.

    Parameters
    ----------
    path_or_files : path-like or list of path-like
        A folder, one DICOM file (its folder is scanned, not recursively), or a list of files.

    Returns
    -------
    SeriesList
        One :class:`SeriesInfo` per SeriesInstanceUID, ordered by (SeriesNumber, description, UID).

    Raises
    ------
    NotAVolumeError
        The path does not exist.
    NoDicomError
        No DICOM image was found (the message says how many files were checked).
    DicomReadError
        The folder cannot be read, or the one file given is not a readable DICOM image.
    """
    files, where, single, bad_dirs = _collect_files(path_or_files)
    if single is not None:
        _check_single(single)
    series = _scan_files(files, where)
    series.unreadable[:0] = bad_dirs
    if not series:
        _raise_no_dicom(series, where)
    return series


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
        chosen = series[0]
    else:
        matches = [s for s in series if s.series_instance_uid == str(series_uid)]
        if not matches:
            known = ", ".join(f"{s.series_instance_uid} ({s.description or 'no description'})" for s in series)
            raise DicomReadError(f"no series with SeriesInstanceUID {series_uid}; found: {known}", where)
        chosen = matches[0]
    keep = {f: blobs[f] for f in chosen.files if f in blobs}
    blobs.clear()  # other series' bytes can go now
    return _read_series(chosen, where, modality=modality, allow_uneven=allow_uneven, blobs=keep)


def guess_modality(ds) -> str | None:
    """Guess the MR contrast of a series from its header.

    Words first (SeriesDescription, ProtocolName, SequenceName, and AcquisitionContrast for Enhanced MR):
    FLAIR / dark fluid / TIRM -> "FLAIR"; T1 with post/gad/+C/CE/contrast (or a ContrastBolusAgent) ->
    "T1c"; T2 (not T2*) -> "T2"; PD / proton density -> "PD"; T1 / MPRAGE / SPGR / TFE -> "T1". Without a
    word, the repetition, echo and inversion times decide (:func:`napari_medtrans.core.modality.modality_from_timing`);
    else None.
    """
    from ..modality import modality_from_fields

    return modality_from_fields(ds)


# -- scanning -----------------------------------------------------------------------------------------------


def _collect_files(path_or_files) -> tuple[list[str], str, str | None, list[tuple[str, str]]]:
    """(files to scan, path to name in errors, the single file asked for or None, unreadable subfolders).

    A folder that cannot be listed raises :class:`DicomReadError`; subfolders that cannot be listed come back
    with the reason, to be reported like unreadable files.
    """
    if isinstance(path_or_files, (list, tuple)):
        if not path_or_files:
            raise NoDicomError("an empty list of files was given", None)
        files = [os.fspath(p) for p in path_or_files]
        for f in files:
            if not os.path.isfile(f):
                raise NotAVolumeError(_not_a_file(f), f)
        parents = {os.path.dirname(os.path.abspath(f)) for f in files}
        where = os.path.commonpath(sorted(parents)) if len(parents) > 1 else parents.pop()
        return sorted(set(files)), where, None, []
    p = os.fspath(path_or_files)
    if os.path.isdir(p):
        files, errors = [], []
        for root, dirs, names in os.walk(p, onerror=errors.append):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
        bad_dirs = []
        for err in errors:
            folder = os.fsdecode(err.filename) if err.filename is not None else p
            if os.path.normpath(folder) == os.path.normpath(p):
                raise DicomReadError(f"folder cannot be read ({os_reason(err)})", p)
            bad_dirs.append((folder, f"folder cannot be read ({os_reason(err)})"))
        return files, p, None, bad_dirs
    if os.path.isfile(p):
        folder = os.path.dirname(p) or "."
        try:
            names = os.listdir(folder)
        except OSError as exc:
            raise DicomReadError(f"folder cannot be read ({os_reason(exc)})", folder) from exc
        files = sorted(
            os.path.join(folder, n) for n in names if not n.startswith(".") and os.path.isfile(os.path.join(folder, n))
        )
        # Keep the caller's spelling of the single file so errors and lookups use it.
        target = os.path.normpath(os.path.abspath(p))
        files = [p if os.path.normpath(os.path.abspath(f)) == target else f for f in files]
        if p not in files:
            files.append(p)  # a hidden file given by name
        return files, folder, p, []
    raise NotAVolumeError(_not_a_file(p), p)


def _not_a_file(path: str) -> str:
    """Why ``path`` is neither a regular file nor a folder, in words."""
    if os.path.exists(path):
        return "is not a regular file or folder (a device, pipe or socket)"
    return missing_reason(path)


def _check_single(path: str) -> None:
    """Refuse the one file asked for at once when it is not a readable DICOM image (its folder is not scanned)."""
    status, value = _read_header(path)
    if status == "skip":
        raise NotAVolumeError("is neither a NIfTI file nor a DICOM image", path)
    if status == "bad":
        raise _unreadable_error([(path, value)])


def _unreadable_error(unreadable: list[tuple[str, str]]) -> DicomReadError:
    """The error for the first of the unreadable files or folders, counting the others."""
    path, reason = unreadable[0]
    more = f" (and {len(unreadable) - 1} more unreadable files)" if len(unreadable) > 1 else ""
    if reason.startswith(("cannot be read", "folder cannot be read")):
        return DicomReadError(f"{reason}{more}", path)
    return DicomReadError(f"cannot read DICOM file: {reason}{more}", path)


class _Blobs(dict):
    """Whole small files read while scanning, kept (up to ``budget`` bytes) so their pixels are not read twice."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget = budget

    def offer(self, path: str, data: bytes) -> None:
        if len(data) <= self.budget:
            self[path] = data
            self.budget -= len(data)


def _read_header(path: str, blobs: _Blobs | None = None):
    """('ok', dataset) | ('skip', None) | ('bad', reason) for one file.

    The head of the file is read in one call and parsed from memory (a fast splitter for the common
    encodings, else pydicom on a BytesIO); parsing stops before the pixel data. When the header runs past the
    chunk, pydicom parses the whole file with large elements deferred. A file that fit in the chunk is offered
    to ``blobs`` so that its pixel data need not be read again.
    """
    import io
    import warnings

    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # Non-blocking, so that a named pipe in the folder is skipped instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "skip", None  # a pipe, socket or device: not a DICOM file
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        # Unreadable is not "not DICOM": the file might be a slice of the series.
        return "bad", f"cannot be read ({os_reason(exc)})"
    if len(head) < 132 or head[128:132] != b"DICM":
        return "skip", None  # no DICOM preamble: not a DICOM Part 10 file
    complete = len(head) < _HEAD_BYTES
    try:
        ds = _fast_header(head, path)
        if ds is not None:
            result = _classify(ds)
            if blobs is not None and complete and result[0] == "ok":
                blobs.offer(path, head)
            return result
        buf = io.BytesIO(head)
        try:
            with warnings.catch_warnings():
                # pydicom warns about what it tolerates; a file it cannot parse is reported below instead.
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(buf, stop_before_pixels=True)
            partial = not complete and buf.tell() >= len(head) - 8
        except InvalidDicomError:
            raise
        except Exception:  # noqa: BLE001 - an element cut at the chunk's end; decided below on the whole file
            if complete:
                raise
            partial = True
        if partial:
            # The header continues past the chunk: parse the whole file, deferring large elements.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="64 KB")
    except InvalidDicomError:
        return "skip", None
    except Exception as exc:  # noqa: BLE001 - any parser failure on a DICOM file is reported, never raised raw
        return "bad", f"header cannot be parsed, the file is corrupt or truncated ({type(exc).__name__}: {exc})"
    ds.filename = path
    if getattr(ds, "buffer", None) is not None:
        ds.buffer = None  # pydicom keeps the parsed BytesIO; drop it so headers do not hold file contents
    return _classify(ds)


def _classify(ds):
    """('ok', ds) for an image with a series, ('skip', None) for other DICOM objects, else ('bad', reason)."""
    if "Rows" in ds and "SeriesInstanceUID" in ds:
        return "ok", ds
    meta_sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    sop = str(ds.get("SOPClassUID", "") or meta_sop)
    if sop and not _is_image_sop(sop):
        return "skip", None  # DICOMDIR, structured report, presentation state, ...
    return "bad", "header is incomplete (no Rows or SeriesInstanceUID): the file is truncated or corrupt"


# -- fast header parsing ------------------------------------------------------------------------------------

_VR_BYTES: dict[bytes, str] = {}
_LONG_VR: frozenset = frozenset()
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _vr_tables():
    global _VR_BYTES, _LONG_VR
    if not _VR_BYTES:
        from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

        _VR_BYTES = {v.value.encode(): str(v.value) for v in VR if len(v.value) == 2}
        _LONG_VR = frozenset(str(v.value) for v in EXPLICIT_VR_LENGTH_32)
    return _VR_BYTES, _LONG_VR


def _split_elements(buf: bytes, pos: int, implicit: bool, meta: bool):
    """Top-level elements of ``buf`` from ``pos`` as pydicom RawDataElements, the way pydicom's reader makes them.

    Stops at the pixel data (or, for ``meta``, at the first element outside group 0002). Returns
    ``(elements, position)``, or None whenever anything is unusual (undefined lengths, unknown VRs, command
    elements, a value running past the buffer): the caller then lets pydicom parse the file.
    """
    from pydicom.dataelem import RawDataElement, empty_value_for_VR
    from pydicom.tag import BaseTag

    vr_bytes, long_vr = _vr_tables()
    head = struct.Struct("<HHI" if implicit else "<HH2sH").unpack_from
    long_len = struct.Struct("<I").unpack_from
    end = len(buf)
    elements = {}
    if not meta and pos + 6 <= end:
        looks_explicit = buf[pos + 4 : pos + 6] in vr_bytes
        if looks_explicit == implicit:
            return None  # encoding differs from the transfer syntax: pydicom's heuristics handle it
    reached_stop = False
    while pos + 8 <= end:
        if implicit:
            group, elem, length = head(buf, pos)
            vr = None
            vpos = pos + 8
        else:
            group, elem, vrb, length = head(buf, pos)
            vr = vr_bytes.get(vrb)
            if vr is None:
                if meta and group != 2:
                    reached_stop = True
                    break
                return None
            vpos = pos + 8
            if vr in long_vr:
                if pos + 12 > end:
                    return None
                (length,) = long_len(buf, pos + 8)
                vpos = pos + 12
        tag = group << 16 | elem
        if (meta and group != 2) or tag in _PIXEL_TAGS:
            reached_stop = True
            break
        if group == 0x0000 or group == 0xFFFE or length == 0xFFFFFFFF or vpos + length > end:
            return None
        btag = BaseTag(tag)
        elements[btag] = RawDataElement(
            btag, vr, length, buf[vpos : vpos + length] if length else empty_value_for_VR(vr, raw=True),
            vpos, implicit, True,
        )
        pos = vpos + length
    if not reached_stop:
        if pos != end:
            return None  # a few stray bytes: truncated
        if not meta:
            return None  # no pixel data reached inside the chunk: the header may continue
    return elements, pos


def _fast_header(head: bytes, path: str):
    """Parse a Part 10 header from memory without pydicom's per-element overhead, or None to use pydicom.

    Handles the common case (explicit or implicit VR little endian, defined lengths) and builds the same
    FileDataset of raw elements that :func:`pydicom.dcmread` would, so values are converted lazily as usual.
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    got = _split_elements(head, 132, implicit=False, meta=True)
    if got is None or not got[0]:
        return None
    meta_elems, pos = got
    file_meta = FileMetaDataset(meta_elems)
    file_meta.set_original_encoding(is_implicit_vr=False, is_little_endian=True, character_encoding="iso8859")
    ts_elem = meta_elems.get(0x00020010)
    if ts_elem is None or not isinstance(ts_elem.value, bytes):
        return None
    ts = ts_elem.value.decode("ascii", "replace").strip(" \x00")
    if ts not in _NATIVE:
        return None
    implicit = not _NATIVE[ts]
    got = _split_elements(head, pos, implicit=implicit, meta=False)
    if got is None:
        return None
    dataset = Dataset(got[0])
    ds = FileDataset(path, dataset, head[:128], file_meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    return ds


def _is_image_sop(uid: str) -> bool:
    from pydicom.uid import UID

    name = UID(uid).name
    return "Image" in name and "Storage" in name


def _scan_files(files: list[str], where: str, blobs: _Blobs | None = None) -> SeriesList:
    if len(files) > 1 and _HEADER_WORKERS > 1:
        with ThreadPoolExecutor(max_workers=min(_HEADER_WORKERS, len(files))) as pool:
            results = list(pool.map(lambda f: _read_header(f, blobs), files))
    else:
        results = [_read_header(f, blobs) for f in files]
    groups: dict[str, list[tuple[str, object]]] = {}
    skipped, unreadable = [], []
    for f, (status, value) in zip(files, results):
        if status == "ok":
            groups.setdefault(_text(value, 0x0020000E), []).append((f, value))
        elif status == "skip":
            skipped.append(f)
        else:
            unreadable.append((f, value))
    infos = []
    for uid, members in groups.items():
        members.sort(key=lambda m: m[0])
        first = members[0][1]
        number = first.get("SeriesNumber")
        infos.append(
            SeriesInfo(
                series_instance_uid=uid,
                description=str(first.get("SeriesDescription", "") or first.get("ProtocolName", "") or ""),
                modality=guess_modality(first),
                n_files=len(members),
                files=[m[0] for m in members],
                series_number=int(number) if number not in (None, "") else None,
                study_instance_uid=str(first.get("StudyInstanceUID", "") or "") or None,
                headers=[m[1] for m in members],
            )
        )
    infos.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.description,
                              s.series_instance_uid))
    return SeriesList(infos, path=where, n_checked=len(files), skipped=skipped, unreadable=unreadable)


def _raise_no_dicom(series: SeriesList, where: str):
    if series.unreadable:
        raise _unreadable_error(series.unreadable)
    # A folder named like a NIfTI file was most likely meant to be one.
    what = "is a folder, not a NIfTI file, and " if where.lower().endswith((".nii", ".nii.gz")) else ""
    raise NoDicomError(
        f"{what}holds no DICOM image ({series.n_checked} files checked, {len(series.skipped)} not DICOM images)",
        where,
    )


# -- geometry of one series ---------------------------------------------------------------------------------


#: Numeric and code-string attributes read straight from their raw bytes on the hot path (see :func:`_fast`).
_FAST = {
    "ImagePositionPatient": (0x00200032, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"),
    "PixelSpacing": (0x00280030, "DS"),
    "SliceThickness": (0x00180050, "DS"),
    "SpacingBetweenSlices": (0x00180088, "DS"),
    "RescaleIntercept": (0x00281052, "DS"),
    "RescaleSlope": (0x00281053, "DS"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "SamplesPerPixel": (0x00280002, "US"),
    "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"),
    "PixelRepresentation": (0x00280103, "US"),
    "SyntheticData": (0x0008001C, "CS"),
}


def _fast(ds, keyword: str, default=None):
    """``ds.get(keyword)`` without pydicom's value conversion (validation dominates the read time otherwise).

    DS/IS values come back as a list of strings (one per value), US as an int, CS as a stripped string; an
    absent or empty attribute gives ``default``. Elements pydicom has already converted are used as they are.
    """
    tag, vr = _FAST[keyword]
    elem = ds.get_item(tag)
    if elem is None:
        return default
    raw = elem.value
    if getattr(elem, "is_raw", False) and isinstance(raw, bytes):
        if vr == "US":
            if len(raw) != 2:
                return ds[tag].value
            return int.from_bytes(raw, "little" if elem.is_little_endian else "big")
        text = raw.decode("ascii", "replace").strip(" \x00")
        if not text:
            return default
        return text if vr == "CS" else [t.strip() for t in text.split("\\")]
    value = ds[tag].value
    if value is None or value == "":
        return default
    if vr in ("DS", "IS"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            return [value]
        return list(value)
    return value


def _text(ds, tag: int) -> str:
    """A string attribute (UI, CS, LO, ...) as text, read from the raw bytes when pydicom has not converted it."""
    elem = ds.get_item(tag)
    if elem is None:
        return ""
    if getattr(elem, "is_raw", False) and isinstance(elem.value, bytes):
        return elem.value.decode("ascii", "replace").strip(" \x00")
    value = ds[tag].value
    return "" if value is None else str(value)


def _transfer_syntax(ds) -> str:
    meta = getattr(ds, "file_meta", None)
    return _text(meta, 0x00020010) if meta is not None else ""


def _first_float(values, default: float | None) -> float | None:
    """First entry of a :func:`_fast` DS/IS list as float, or ``default``."""
    if not values:
        return default
    return _opt_float(values[0], default)


@dataclasses.dataclass
class _Frame:
    path: str
    ds: object
    index: int | None  # frame number in a multi-frame file, None for a single-frame file
    ipp: np.ndarray
    iop: np.ndarray
    spacing: np.ndarray
    slope: float
    intercept: float
    thickness: float | None


def _floats(value, n: int, keyword: str, tag: str, path: str, where: str = "", positive: bool = False) -> np.ndarray:
    if value is None or value == "":
        raise GeometryError(f"missing {keyword} {tag}{where}, needed for the volume geometry", path)
    try:
        arr = np.asarray([float(v) for v in (value if n > 1 else [value])], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{keyword} {tag}{where} is not numeric: {value!r}", path) from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{keyword} {tag}{where} should hold {n} numbers, got {value!r}", path)
    if positive and not np.all(arr > 0):
        raise GeometryError(f"{keyword} {tag}{where} should hold {n} positive numbers, got {value!r}", path)
    return arr


def _opt_float(value, default: float | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _n_frames(path: str, ds) -> int:
    """NumberOfFrames (1 when absent); below 1 or not a whole number is refused."""
    value = _first_float(_fast(ds, "NumberOfFrames"), 1)
    if value is None or not math.isfinite(value) or value < 1 or value != int(value):
        raise DicomReadError(
            f"NumberOfFrames (0028,0008) is {_fast(ds, 'NumberOfFrames')!r}; it should be a whole number of at "
            "least 1: the header is corrupt",
            path,
        )
    return int(value)


def _rescale(value, default: float | None, keyword: str, path: str, where: str = "") -> float | None:
    """RescaleSlope or RescaleIntercept as a finite float (``default`` when absent); anything else is refused.

    A NaN slope would turn every voxel into NaN, an infinite one every voxel into inf, and a value past the
    float32 range overflows on the first stored value: all three mean a corrupt header, never an image.
    """
    tag = "(0028,1053)" if keyword == "RescaleSlope" else "(0028,1052)"
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DicomReadError(
            f"{keyword} {tag}{where} is not a number ({value!r}): the pixel values cannot be scaled", path
        ) from None
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        raise DicomReadError(
            f"{keyword} {tag}{where} is {str(value).strip()}: scaled by it the pixel values are not finite "
            "numbers; the header is corrupt",
            path,
        )
    return number


def _frames_of(path: str, ds) -> list[_Frame]:
    n_frames = _n_frames(path, ds)
    if n_frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(path, ds, n_frames)
    ipp = _floats(_fast(ds, "ImagePositionPatient"), 3, "ImagePositionPatient", "(0020,0032)", path)
    iop = _floats(_fast(ds, "ImageOrientationPatient"), 6, "ImageOrientationPatient", "(0020,0037)", path)
    ps = _floats(_fast(ds, "PixelSpacing"), 2, "PixelSpacing", "(0028,0030)", path, positive=True)
    thickness = _first_float(_fast(ds, "SpacingBetweenSlices"), None) or _first_float(
        _fast(ds, "SliceThickness"), None)
    return [
        _Frame(
            path, ds, None, ipp, iop, ps,
            slope=_rescale(_fast(ds, "RescaleSlope"), 1.0, "RescaleSlope", path),
            intercept=_rescale(_fast(ds, "RescaleIntercept"), 0.0, "RescaleIntercept", path),
            thickness=thickness,
        )
    ]


def _group_item(ds, per_frame_item, keyword: str):
    """The first item of a functional group macro, per-frame first, else shared."""
    for holder in (per_frame_item, _first(ds.get("SharedFunctionalGroupsSequence"))):
        if holder is not None and keyword in holder:
            item = _first(holder.get(keyword))
            if item is not None:
                return item
    return None


def _first(seq):
    return seq[0] if seq is not None and len(seq) else None


def _enhanced_frames(path: str, ds, n_frames: int) -> list[_Frame]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != n_frames:
        have = 0 if per_frame is None else len(per_frame)
        raise GeometryError(
            f"multi-frame file has {n_frames} frames but {have} PerFrameFunctionalGroupsSequence items; "
            "per-frame plane positions are needed for the volume geometry",
            path,
        )
    frames = []
    for f, item in enumerate(per_frame):
        where = f" in frame {f + 1}"
        pos = _group_item(ds, item, "PlanePositionSequence")
        ori = _group_item(ds, item, "PlaneOrientationSequence")
        meas = _group_item(ds, item, "PixelMeasuresSequence")
        pvt = _group_item(ds, item, "PixelValueTransformationSequence")
        ipp = _floats(None if pos is None else pos.get("ImagePositionPatient"), 3,
                      "ImagePositionPatient", "(0020,0032) of PlanePositionSequence", path, where)
        iop = _floats(None if ori is None else ori.get("ImageOrientationPatient"), 6,
                      "ImageOrientationPatient", "(0020,0037) of PlaneOrientationSequence", path, where)
        ps = _floats(None if meas is None else meas.get("PixelSpacing"), 2,
                     "PixelSpacing", "(0028,0030) of PixelMeasuresSequence", path, where, positive=True)
        thickness = None
        if meas is not None:
            thickness = _opt_float(meas.get("SpacingBetweenSlices"), None) or _opt_float(
                meas.get("SliceThickness"), None)
        in_group = " of PixelValueTransformationSequence" + where
        slope = _rescale(None if pvt is None else pvt.get("RescaleSlope"), None, "RescaleSlope", path, in_group)
        intercept = _rescale(None if pvt is None else pvt.get("RescaleIntercept"), None, "RescaleIntercept", path,
                             in_group)
        frames.append(
            _Frame(
                path, ds, f, ipp, iop, ps,
                slope=slope if slope is not None else _rescale(ds.get("RescaleSlope"), 1.0, "RescaleSlope", path),
                intercept=intercept if intercept is not None else _rescale(
                    ds.get("RescaleIntercept"), 0.0, "RescaleIntercept", path),
                thickness=thickness,
            )
        )
    return frames


def _check_consistent(frames: list[_Frame]) -> tuple[int, int]:
    ref = frames[0]
    rows, cols = int(_fast(ref.ds, "Rows", 0)), int(_fast(ref.ds, "Columns", 0))
    seen = set()
    for fr in frames:
        if id(fr.ds) in seen:
            continue
        seen.add(id(fr.ds))
        r, c = int(_fast(fr.ds, "Rows", 0)), int(_fast(fr.ds, "Columns", 0))
        if (r, c) != (rows, cols):
            raise DicomReadError(
                f"slice size {r}x{c} (rows x columns) differs from {rows}x{cols} in {ref.path}; "
                "the series mixes images of different sizes",
                fr.path,
            )
        spp = int(_fast(fr.ds, "SamplesPerPixel", 1))
        if spp != 1:
            raise DicomReadError(f"has {spp} samples per pixel; only greyscale MR images are supported", fr.path)
    iops = np.array([fr.iop for fr in frames])
    bad = np.flatnonzero(np.abs(iops - ref.iop).max(axis=1) > 1e-4)
    if bad.size:
        fr = frames[bad[0]]
        raise DicomReadError(
            f"ImageOrientationPatient {fr.iop.round(5).tolist()} differs from "
            f"{ref.iop.round(5).tolist()} in {ref.path}; the series mixes slice orientations",
            fr.path,
        )
    spacings = np.array([fr.spacing for fr in frames])
    bad = np.flatnonzero((np.abs(spacings - ref.spacing) > 1e-5 + 1e-4 * np.abs(ref.spacing)).any(axis=1))
    if bad.size:
        fr = frames[bad[0]]
        raise DicomReadError(
            f"PixelSpacing {fr.spacing.tolist()} differs from {ref.spacing.tolist()} in {ref.path}", fr.path
        )
    if rows <= 0 or cols <= 0:
        raise DicomReadError(f"image size {rows}x{cols} is empty", ref.path)
    return rows, cols


def _frame_label(fr: _Frame) -> str:
    return fr.path if fr.index is None else f"{fr.path} frame {fr.index + 1}"


# -- reading ------------------------------------------------------------------------------------------------


def _read_series(
    info: SeriesInfo, where: str, *, modality: str | None, allow_uneven: bool, blobs: dict | None = None
) -> Volume:
    frames = [fr for path, ds in zip(info.files, info.headers) for fr in _frames_of(path, ds)]
    rows, cols = _check_consistent(frames)
    try:
        normal = slice_normal(frames[0].iop)
    except ValueError as exc:
        raise GeometryError(f"ImageOrientationPatient (0020,0037) is unusable: {exc}", frames[0].path) from exc
    dist = np.array([fr.ipp @ normal for fr in frames])
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    dist = dist[order]
    gaps = np.diff(dist)
    provenance: dict = {}

    dup = np.flatnonzero(gaps < _DUPLICATE_TOL_MM)
    if dup.size:
        a, b = frames[dup[0]], frames[dup[0] + 1]
        differ = []
        for key in ("EchoNumbers", "EchoTime", "TemporalPositionIdentifier", "TriggerTime", "AcquisitionNumber",
                    "InversionTime", "ImageType"):
            va, vb = a.ds.get(key), b.ds.get(key)
            if str(va) != str(vb):
                differ.append(f"{key} {va} vs {vb}")
        hint = f"; they differ in {', '.join(differ)}" if differ else ""
        raise DicomReadError(
            f"{dup.size} slice(s) share a position with another slice "
            f"(e.g. {_frame_label(a)} and {_frame_label(b)} at {dist[dup[0]]:.3f} mm along the slice normal): "
            f"the series holds several echoes, time points or stacks{hint}. Split it before reading",
            where,
        )
    if len(frames) >= 3:
        typical = float(np.median(gaps))
        tol = max(0.01, 0.01 * typical)
        uneven = bool(np.any(np.abs(gaps - typical) > tol))
        if not uneven:
            # Positions must also lie on one line: in-plane jumps between slices are not a regular grid.
            step = (frames[-1].ipp - frames[0].ipp) / (len(frames) - 1)
            expected = frames[0].ipp[None, :] + np.arange(len(frames))[:, None] * step[None, :]
            off = np.linalg.norm(np.array([fr.ipp for fr in frames]) - expected, axis=1)
            if off.max() > tol and not allow_uneven:
                worst = frames[int(off.argmax())]
                raise GeometryError(
                    f"slice positions do not lie on a straight line (ImagePositionPatient of "
                    f"{_frame_label(worst)} is {off.max():.3f} mm off); the series is not a regular grid",
                    where,
                )
        if uneven:
            if not allow_uneven:
                raise UnevenSpacingError(where, gaps.tolist())
            provenance["slice_positions_mm"] = dist.tolist()
            provenance["uneven_spacing_mm"] = gaps.tolist()

    try:
        affine = affine_from_dicom(
            frames[0].ipp,
            frames[0].iop,
            frames[0].spacing,
            slice_positions=[fr.ipp for fr in frames],
            slice_step=frames[0].thickness or 1.0,
        )
    except ValueError as exc:
        raise GeometryError(f"the slice geometry gives no usable affine: {exc}", where) from exc
    data = _read_pixels(frames, rows, cols, blobs or {}, where)

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


def _read_pixels(frames: list[_Frame], rows: int, cols: int, blobs: dict | None = None,
                 where: str | None = None) -> np.ndarray:
    """Decode every frame once, straight into a preallocated (k, row, column) float32 array; return its (i,j,k) view."""
    where = where if where is not None else frames[0].path
    n_voxels = len(frames) * rows * cols
    if n_voxels > MAX_VOXELS:
        raise DicomReadError(
            f"the headers claim {len(frames)} slices of {rows} x {cols} pixels ({n_voxels:,} voxels), more than "
            f"the {MAX_VOXELS:,} a volume may hold here; the headers are corrupt or the images are not one MR volume",
            where,
        )
    try:
        out = np.empty((len(frames), rows, cols), dtype=np.float32)
    except MemoryError as exc:
        raise DicomReadError(
            f"not enough memory for {len(frames)} slices of {rows} x {cols} pixels ({n_voxels * 4 / 2**30:.1f} GiB "
            "as float32)",
            where,
        ) from exc
    jobs: dict[str, list[tuple[int, _Frame]]] = {}
    for slot, fr in enumerate(frames):
        jobs.setdefault(fr.path, []).append((slot, fr))

    def work(path: str) -> None:
        items = jobs[path]
        ds = items[0][1].ds
        n_frames = _n_frames(path, ds)
        pixels = _native_pixels(path, ds, rows, cols, n_frames, (blobs or {}).get(path))
        if pixels is None:
            pixels = _decoded_pixels(path, ds, rows, cols, n_frames)
        for slot, fr in items:
            src = pixels[fr.index or 0]
            dst = out[slot]
            risky = _may_overflow(src.dtype, fr.slope, fr.intercept)
            with np.errstate(over="ignore", invalid="ignore"):
                if fr.slope != 1.0:
                    np.multiply(src, np.float32(fr.slope), out=dst, casting="unsafe")  # one pass: cast and scale
                else:
                    dst[...] = src
                if fr.intercept != 0.0:
                    dst += np.float32(fr.intercept)
            if risky and not np.all(np.isfinite(dst)):
                raise DicomReadError(
                    f"RescaleSlope (0028,1053) {fr.slope:g} and RescaleIntercept (0028,1052) {fr.intercept:g} "
                    f"scale the stored values{'' if fr.index is None else f' of frame {fr.index + 1}'} past the "
                    "float32 range (to infinity); the header is corrupt",
                    path,
                )

    paths = list(jobs)
    compressed = any(
        _transfer_syntax(items[0][1].ds) not in _NATIVE
        for items in jobs.values()
    )
    if compressed and len(paths) > 1 and _PIXEL_WORKERS > 1:
        with ThreadPoolExecutor(max_workers=min(_PIXEL_WORKERS, len(paths))) as pool:
            futures = [pool.submit(work, p) for p in paths]
            for fut in futures:
                fut.result()  # re-raises the first failure (a DicomReadError naming its file), in file order
    else:
        for path in paths:
            work(path)
    return out.transpose(2, 1, 0)


def _may_overflow(dtype: np.dtype, slope: float, intercept: float) -> bool:
    """True when ``stored * slope + intercept`` can leave the float32 range for some stored value of ``dtype``."""
    if dtype.kind not in "iub":
        return True  # float pixel data: any value is possible
    info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
    biggest = max(abs(int(info.min)), abs(int(info.max)))
    return biggest * abs(slope) + abs(intercept) >= _FLOAT32_MAX


_NATIVE = {"1.2.840.10008.1.2": False, "1.2.840.10008.1.2.1": True}  # implicit / explicit VR little endian
_PIXEL_TAG = b"\xe0\x7f\x10\x00"


def _dtype_of(ds) -> np.dtype | None:
    bits = int(_fast(ds, "BitsAllocated", 0))
    stored = int(_fast(ds, "BitsStored", bits))
    signed = int(_fast(ds, "PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32) or (signed and stored != bits):
        return None  # signed values narrower than their container need sign extension: let pydicom do it
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")


def _native_pixels(path: str, ds, rows: int, cols: int, n_frames: int, blob: bytes | None = None):
    """Uncompressed little-endian pixel data taken from the end of the file (or of ``blob``, the file's bytes
    read while scanning), or None to fall back to pydicom.

    The element header in front of the expected number of bytes is checked (tag, VR, length), so a file whose
    Pixel Data is not the last element, or a truncated file, falls back to pydicom.
    """
    ts = _transfer_syntax(ds)
    if ts not in _NATIVE or int(_fast(ds, "SamplesPerPixel", 1)) != 1:
        return None
    dtype = _dtype_of(ds)
    if dtype is None:
        return None
    count = n_frames * rows * cols
    nbytes = count * dtype.itemsize
    padded = nbytes + (nbytes & 1)
    explicit = _NATIVE[ts]
    head = 12 if explicit else 8

    def header_ok(hdr: bytes) -> bool:
        if hdr[:4] != _PIXEL_TAG:
            return False
        if explicit:
            return hdr[4:6] in (b"OW", b"OB") and struct.unpack("<I", hdr[8:12])[0] == padded
        return struct.unpack("<I", hdr[4:8])[0] == padded

    if blob is not None:
        start = len(blob) - padded
        if start - head < 0 or not header_ok(blob[start - head : start]):
            return None
        return np.frombuffer(blob, dtype=dtype, count=count, offset=start).reshape(n_frames, rows, cols)
    try:
        size = os.path.getsize(path)
        if size < padded + head:
            return None
        with open(path, "rb") as fh:
            fh.seek(size - padded - head)
            if not header_ok(fh.read(head)):
                return None
            buf = np.empty(count, dtype=dtype)
            if fh.readinto(buf) != nbytes:
                return None
    except OSError:
        return None
    return buf.reshape(n_frames, rows, cols)


def _decoded_pixels(path: str, ds, rows: int, cols: int, n_frames: int) -> np.ndarray:
    """Decode with pydicom (compressed syntaxes, odd layouts); errors become DicomReadError naming the file."""
    import warnings

    import pydicom
    from pydicom.pixels import pixel_array

    ts = _transfer_syntax(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what pydicom tolerates is no news to the user; failures are below
            full = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001
        raise DicomReadError(f"cannot be read ({type(exc).__name__}: {exc})", path) from exc
    if "PixelData" not in full:
        raise DicomReadError("has no pixel data (the file is truncated or not an image)", path)
    if ts in _NATIVE:
        bits = int(full.get("BitsAllocated", 16) or 16)
        expected = n_frames * rows * cols * bits // 8
        have = len(full.PixelData or b"")
        if have < expected:
            raise DicomReadError(
                f"pixel data is truncated: {have} of {expected} bytes; the file is incomplete", path
            )
    try:
        arr = pixel_array(full)
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types; report them all the same way
        name = getattr(pydicom.uid.UID(ts), "name", ts) if ts else "unknown transfer syntax"
        raise DicomReadError(f"pixel data ({name}) cannot be decoded: {type(exc).__name__}: {exc}", path) from exc
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != (n_frames, rows, cols):
        raise DicomReadError(
            f"pixel data has shape {arr.shape}, expected {(n_frames, rows, cols)} (frames, rows, columns)", path
        )
    return arr

