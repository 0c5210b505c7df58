"""The geometry of one DICOM series: its frames, their consistency, their order along the slice normal, the affine.

* :func:`_frames_of` turns one header into :class:`_Frame` records (one for a single-frame image, one per frame of
  an Enhanced MR image, from its functional groups): position, orientation, pixel spacing, rescale.
  Values that would make the volume meaningless are refused here, naming the file and the tag.
* :func:`_check_consistent` refuses a series that mixes image sizes, orientations or pixel spacings.
* :func:`_sorted_frames` sorts the frames along the slice normal and refuses two at one position;
  :func:`_check_spacing` refuses uneven or non-collinear slices (unless allowed); :func:`_series_affine` builds the
  RAS affine.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import DicomReadError, GeometryError, UnevenSpacingError
from .dicom_header import _fast
from .orientation import affine_from_dicom, slice_normal


#: Slices closer than this along the normal (mm) are taken to be at the same position.
_DUPLICATE_TOL_MM = 1e-3
_FLOAT32_MAX = float(np.finfo(np.float32).max)


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


# -- order and spacing of the slices ------------------------------------------------------------------------


def _sorted_frames(frames: list[_Frame], where: str) -> tuple[list[_Frame], np.ndarray]:
    """The frames sorted by position along the slice normal, with those positions (mm).

    Two frames at the same position (several echoes, time points or stacks in one series) are refused.
    """
    try:
        normal = slice_normal(frames[0].iop)
    except ValueError as exc:
        raise GeometryError(f"ImageOrientationPatient (0020,0037) is unusable: {exc}", frames[0].path) from exc
    dist = np.array([fr.ipp @ normal for fr in frames])
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    dist = dist[order]
    gaps = np.diff(dist)
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
    return frames, dist


def _check_spacing(frames: list[_Frame], dist: np.ndarray, where: str, allow_uneven: bool) -> dict:
    """Check that the sorted slices are evenly spaced along one line; return the provenance of an uneven stack.

    Uneven gaps raise :class:`UnevenSpacingError` unless ``allow_uneven``; then the slice positions and gaps are
    returned (``slice_positions_mm``, ``uneven_spacing_mm``). Positions off a straight line raise
    :class:`GeometryError` (also unless ``allow_uneven``). Fewer than three slices are always accepted.
    """
    provenance: dict = {}
    if len(frames) < 3:
        return provenance
    gaps = np.diff(dist)
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
    return provenance


def _series_affine(frames: list[_Frame], where: str) -> np.ndarray:
    """The RAS affine of the sorted frames (from the first one's position, orientation and spacing)."""
    try:
        return affine_from_dicom(
            frames[0].ipp,
            frames[0].iop,
            frames[0].spacing,
            slice_positions=[fr.ipp for fr in frames],
            slice_step=frames[0].thickness or 1.0,
        )
    except ValueError as exc:
        raise GeometryError(f"the slice geometry gives no usable affine: {exc}", where) from exc
