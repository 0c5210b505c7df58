"""Finding DICOM series: collect the files of a folder or list, read their headers, group them by series.

* :func:`scan_dicom` (re-exported by :mod:`napari_medtrans.core.io.dicom`) returns a :class:`SeriesList`: one
  :class:`SeriesInfo` per SeriesInstanceUID, with the files that were skipped (not DICOM images) or unreadable.
* :func:`_collect_files` turns what the caller gave (a folder, one file, a list of files) into the files to scan;
  :func:`_scan_files` reads their headers (:mod:`.dicom_header`) and groups them.
* :func:`guess_modality` names the MR contrast of a series from its header.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ..errors import DicomReadError, NoDicomError, NotAVolumeError
from .dicom_errors import _not_a_file, _raise_no_dicom, _unreadable_error
from .dicom_header import _Blobs, _read_header, _text
from .paths import os_reason


#: Threads that parse headers. Parsing is pure Python and holds the GIL; measured on 2 cores, more than one
#: thread only adds contention, so headers are parsed in the calling thread unless this is raised.
_HEADER_WORKERS = 1


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


def _check_single(path: str) -> None:
    """Refuse the one file asked for at once when it is not a readable DICOM image (its folder is not scanned)."""
    status, value = _read_header(path)
    if status == "skip":
        raise NotAVolumeError("is neither a NIfTI file nor a DICOM image", path)
    if status == "bad":
        raise _unreadable_error([(path, value)])


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
