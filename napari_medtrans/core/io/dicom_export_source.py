"""The source series of a DICOM export: its headers, its frames, and which of them each exported slice references.

:func:`~napari_medtrans.core.io.dicom_export.export_dicom_series` takes its patient, study and frame of reference
from the source series' first header, and lists in every exported file the source slices (and frames, for
Enhanced MR sources) whose slab the slice passes through (SourceImageSequence). This module reads the source
headers (a folder or file passes the DICOM reader's checks; see the exporter's module notes, "Sources"), lists
their frames with their positions, maps each exported slice to the frames it passes through, and builds the
SourceImageSequence items.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ExportError, GeometryError
from ..volume import Volume

_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _source_headers(volume: Volume, source: Any, series_uid: str | None) -> tuple[list, str | None]:
    """The source series' headers in slice order ([] for none) and where they came from (for messages).

    A folder or file is read by the DICOM reader, so it passes the checks loading it would (module notes).
    """
    if source is None:
        src = volume.source
        if src is not None and src.kind == "dicom" and src.dicom_datasets:
            return list(src.dicom_datasets), src.path
        return [], None
    if isinstance(source, Volume):
        if source.source is None or source.source.kind != "dicom" or not source.source.dicom_datasets:
            raise ExportError("the source volume was not read from DICOM, so it has no study to export into",
                              source.path)
        return list(source.source.dicom_datasets), source.path
    if isinstance(source, (list, tuple)) and source and hasattr(source[0], "get"):
        files = [str(getattr(ds, "filename", "") or "") for ds in source]
        if not all(f and os.path.isfile(f) for f in files):
            return list(source), None  # headers without files: taken as the caller gives them
        uid = series_uid or str(source[0].get("SeriesInstanceUID", "") or "") or None
        read = _read_source(files, uid)
        return list(read.source.dicom_datasets), read.path
    read = _read_source(source, series_uid)
    return list(read.source.dicom_datasets), read.path or os.fspath(source)


def _read_source(source, series_uid: str | None) -> Volume:
    """The source series read (and checked) by the DICOM reader; uneven spacing is accepted (module notes)."""
    from .dicom import read_dicom_series

    return read_dicom_series(source, series_uid=series_uid, allow_uneven=True)


@dataclasses.dataclass
class _SourceFrame:
    sop_class: str
    sop_uid: str
    frame: int | None  # 1-based frame number of a multi-frame image
    ipp: np.ndarray | None
    normal: np.ndarray | None


def _source_frames(headers: list) -> list[_SourceFrame]:
    from .dicom import _frames_of
    from .orientation import slice_normal

    frames = []
    for ds in headers:
        sop_class = str(ds.get("SOPClassUID", "") or _MR_IMAGE_STORAGE)
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        if not sop_uid:
            continue
        try:
            parsed = _frames_of(str(getattr(ds, "filename", "") or ""), ds)
        except (GeometryError, ValueError, TypeError):
            frames.append(_SourceFrame(sop_class, sop_uid, None, None, None))
            continue
        multi = len(parsed) > 1 or "PerFrameFunctionalGroupsSequence" in ds
        for fr in parsed:
            try:
                normal = slice_normal(fr.iop)
            except ValueError:
                normal = None
            frames.append(_SourceFrame(sop_class, sop_uid, (fr.index + 1) if multi else None, fr.ipp, normal))
    return frames


def _half_slab(frames: list[_SourceFrame]) -> float:
    """Half the source slice spacing (mm): how far from a source plane a slice still belongs to it."""
    dist = sorted(float(f.ipp @ f.normal) for f in frames if f.ipp is not None and f.normal is not None)
    gaps = [b - a for a, b in zip(dist, dist[1:]) if b - a > 1e-3]
    return 0.5 * (float(np.median(gaps)) if gaps else 1.0) + 1e-3


def _references(frames, geom, size, half) -> tuple[list[list[int]], bool]:
    """For each exported slice, the indices of the source frames it passes through; and whether all found one."""
    nx, ny = size
    n_slices = len(geom["positions"])
    if not frames:
        return [[] for _ in range(n_slices)], False
    usable = np.array([i for i, f in enumerate(frames) if f.ipp is not None and f.normal is not None], dtype=int)
    if usable.size == 0:  # no source geometry: every slice comes from the whole source
        return [list(range(len(frames))) for _ in range(n_slices)], False
    normals = np.stack([frames[i].normal for i in usable])  # (F, 3)
    offsets_f = np.einsum("fc,fc->f", np.stack([frames[i].ipp for i in usable]), normals)  # (F,)
    row, col = np.asarray(geom["iop"][:3]), np.asarray(geom["iop"][3:])
    si, sj = geom["pixel_spacing"][1], geom["pixel_spacing"][0]
    corners = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1]], dtype=np.float64)
    offsets = corners[:, :1] * si * row[None] + corners[:, 1:] * sj * col[None]  # (4, 3)
    refs, all_match = [], True
    for pos in geom["positions"]:
        pts = pos[None, :] + offsets
        d = pts @ normals.T - offsets_f[None, :]  # (4, F): signed distance of each corner to each source plane
        hit = usable[(d.min(axis=0) <= half) & (d.max(axis=0) >= -half)]
        if hit.size == 0:
            all_match = False
            hit = usable[[int(np.argmin(np.abs(d.mean(axis=0))))]]
        refs.append([int(i) for i in hit])
    return refs, all_match


def _reference_items(frames: Sequence[_SourceFrame], mapped):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    items = []
    for f in frames:
        item = Dataset()
        item.ReferencedSOPClassUID = f.sop_class
        item.ReferencedSOPInstanceUID = mapped(f.sop_uid)
        if f.frame is not None:
            item.ReferencedFrameNumber = f.frame
        purpose = Dataset()
        purpose.CodeValue = "121322"
        purpose.CodingSchemeDesignator = "DCM"
        purpose.CodeMeaning = "Source image for image processing operation"
        item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
        items.append(item)
    return DicomSequence(items)
