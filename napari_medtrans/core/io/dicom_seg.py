"""Segmentations as DICOM SEG (highdicom), referencing the DICOM series they were drawn on, and back.

What goes into the file
-----------------------
* One Segmentation instance (BINARY, one segment per label value) in a new series of the source's study, with
  the source's patient, study and frame of reference (highdicom copies them from the source headers) and a
  reference to every source image in the Referenced Series Sequence and per frame. The source is a series of
  single-frame images or one multi-frame Enhanced MR image; for the latter each SEG frame references its
  source frame by number, and the plane positions come from the source's per-frame functional groups.
* Segment descriptions: the label's name (from ``segment_labels``, else the label map's own names, e.g. the
  phantom's), a SNOMED CT category and type (:func:`segment_codes`: morphologically abnormal structure /
  edema, necrosis or neoplasm for tumour parts, anatomical structure or body substance for brain tissues and
  CSF, tissue otherwise), and the algorithm (e.g. MedSAM2, semi-automatic: prompted by a person) or MANUAL
  when none is named.
* When the segmented image is synthetic (its DICOM series carries SyntheticData YES), the SEG says so too:
  SyntheticData YES and a SeriesDescription starting "SEG of SYNTHETIC".

The mask must lie on the source series' grid (same columns, rows and slice positions). A segmentation drawn on
a synthetic image must reference the synthetic image's own DICOM series: export that image first
(:func:`~napari_medtrans.core.io.dicom_export.export_dicom_series`) and pass the exported folder as
``source``; :func:`export_image_and_seg` does both.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, GeometryMismatchError, InvalidVolumeError
from ..volume import Volume

__all__ = ["SegExportResult", "export_dicom_seg", "export_image_and_seg", "read_dicom_seg", "segment_codes"]


@dataclasses.dataclass(frozen=True)
class SegExportResult:
    """What :func:`export_dicom_seg` wrote.

    Attributes
    ----------
    path : Path
        The SEG file.
    series_instance_uid, sop_instance_uid : str
        Of the SEG.
    referenced_series_uid : str
        The series it was drawn on.
    segments : dict of int to tuple(int, str)
        Segment number -> (label value in the mask, segment label).
    synthetic_source : bool
        The segmented image was synthetic.
    """

    path: Path
    series_instance_uid: str
    sop_instance_uid: str
    referenced_series_uid: str
    segments: dict[int, tuple[int, str]]
    synthetic_source: bool


def segment_codes(name: str):
    """SNOMED CT (SegmentedPropertyCategory, SegmentedPropertyType) codes for a segment named ``name``.

    Tumour parts (edema, necrosis, enhancing tumour / rim, tumour, lesion, mass) are morphologically abnormal
    structures; CSF is a body substance; grey and white matter and brain are anatomical structures; anything
    else is tissue. The codes are the DICOM (PS3.16) SNOMED CT codes as pydicom lists them.

    Returns
    -------
    (pydicom.sr.coding.Code, pydicom.sr.coding.Code)
    """
    from pydicom.sr.codedict import codes

    n = " ".join(str(name).lower().replace("-", " ").replace("_", " ").split())
    words = set(n.split())
    abnormal, anatomy = codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.AnatomicalStructure
    if "edema" in n or "oedema" in n:
        return abnormal, codes.SCT.Edema
    if "necro" in n:
        return abnormal, codes.SCT.Necrosis
    if any(w in n for w in ("tumour", "tumor", "neoplasm", "enhancing", "rim")):
        return abnormal, codes.SCT.Neoplasm
    if "lesion" in n:
        return abnormal, codes.SCT.Lesion
    if "mass" in words:
        return abnormal, codes.SCT.Mass
    if "csf" in words or "cerebrospinal" in n:
        return codes.SCT.BodySubstance, codes.SCT.CerebrospinalFluid
    if "gm" in words or "grey matter" in n or "gray matter" in n:
        return anatomy, codes.SCT.GrayMatter
    if "wm" in words or "white matter" in n:
        return anatomy, codes.SCT.WhiteMatter
    if "brain" in words:
        return anatomy, codes.SCT.Brain
    return codes.SCT.Tissue, codes.SCT.Tissue


def _source_volume(source: Any, series_uid: str | None) -> Volume:
    if isinstance(source, Volume):
        return source
    from . import load

    return load(source, series_uid=series_uid)


def _n_frames(ds) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


@dataclasses.dataclass(frozen=True)
class _Grid:
    """The source series' slices in the Volume's k order: where each lies and which image (frame) holds it."""

    columns: int
    rows: int
    positions: list  # ImagePositionPatient (LPS mm) of slice k
    frame_of_slice: list | None  # multi-frame source: 0-based frame number holding slice k; None: headers[k]

    @property
    def multi_frame(self) -> bool:
        return self.frame_of_slice is not None


def _frame_position(ds, item, where, f: int) -> np.ndarray:
    for holder in (item, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if holder is not None and holder.get("PlanePositionSequence"):
            ipp = holder.PlanePositionSequence[0].get("ImagePositionPatient")
            if ipp is not None and len(ipp) == 3:
                return np.array([float(v) for v in ipp])
    raise ExportError(f"frame {f + 1} of the multi-frame source has no PlanePositionSequence "
                      "ImagePositionPatient; a SEG needs per-frame plane positions", where)


def _source_grid(headers: list, affine: np.ndarray, n_slices: int, where) -> _Grid:
    """The grid of a source series (single-frame images in slice order, or one multi-frame image)."""
    first = headers[0]
    multi = [_n_frames(h) > 1 or "PerFrameFunctionalGroupsSequence" in h for h in headers]
    if not any(multi):
        return _Grid(int(first.Columns), int(first.Rows),
                     [np.array([float(v) for v in h.ImagePositionPatient]) for h in headers], None)
    if len(headers) != 1:
        raise ExportError(f"the source series holds {len(headers)} images, {sum(multi)} of them multi-frame; a SEG "
                          "here references either single-frame images or one multi-frame image", where)
    per_frame = first.get("PerFrameFunctionalGroupsSequence") or []
    n = _n_frames(first)
    if len(per_frame) != n:
        raise ExportError(f"the multi-frame source has {n} frames but {len(per_frame)} "
                          "PerFrameFunctionalGroupsSequence items; a SEG needs per-frame plane positions", where)
    if n != n_slices:
        raise ExportError(f"the multi-frame source has {n} frames for {n_slices} slices; only a single stack "
                          "(one frame per slice) can be referenced", where)
    inv = np.linalg.inv(np.asarray(affine, float))
    frame_of_slice: list[int | None] = [None] * n
    positions: list = [None] * n
    for f, item in enumerate(per_frame):
        ipp = _frame_position(first, item, where, f)
        k_float = (inv @ np.array([-ipp[0], -ipp[1], ipp[2], 1.0]))[2]
        k = int(round(float(k_float)))
        if abs(k_float - k) > 1e-2 or not 0 <= k < n or frame_of_slice[k] is not None:
            raise ExportError(f"frame {f + 1} of the multi-frame source (at {np.round(ipp, 2).tolist()} LPS mm) "
                              "is not one slice of the volume read from it", where)
        frame_of_slice[k], positions[k] = f, ipp
    return _Grid(int(first.Columns), int(first.Rows), positions, frame_of_slice)


def _check_grid(mask: np.ndarray, mask_affine: np.ndarray | None, grid: _Grid, where) -> None:
    nx, ny, nz = mask.shape
    if len(grid.positions) != nz or (grid.rows, grid.columns) != (ny, nx):
        raise GeometryMismatchError(
            f"the mask ({nx} columns x {ny} rows x {nz} slices) is not on the source series' grid "
            f"({grid.columns} x {grid.rows} x {len(grid.positions)})", where)
    if mask_affine is None:
        return
    for k, ipp in enumerate(grid.positions):
        ras = mask_affine @ np.array([0.0, 0.0, float(k), 1.0])
        lps = np.array([-ras[0], -ras[1], ras[2]])
        if np.abs(lps - ipp).max() > 0.05:
            raise GeometryMismatchError(
                f"slice {k} of the mask lies at {np.round(lps, 2).tolist()} (LPS mm) but the source image there is "
                f"at {np.round(ipp, 2).tolist()}; the mask must be on the source series' grid", where)


def _own_label_names(mask: Any) -> dict[int, str]:
    """A label map's own names of its values (a Volume of modality "labels" with provenance "labels")."""
    if not isinstance(mask, Volume) or mask.modality != "labels":
        return {}
    try:
        return {int(k): str(v) for k, v in dict(mask.provenance.get("labels") or {}).items()}
    except (TypeError, ValueError):
        return {}


def _label_names(mask: Any, values: list[int], segment_labels: Mapping[int, str] | None) -> dict[int, str]:
    """Names of the label values: given ones first, then a label map's own (provenance "labels"), else "segment N"."""
    own = _own_label_names(mask)
    given = dict(segment_labels or {})
    return {v: str(given.get(v, own.get(v, f"segment {v}"))) for v in values}


def export_dicom_seg(
    mask: Volume | np.ndarray,
    out_path: str | os.PathLike,
    *,
    source: Any,
    source_series_uid: str | None = None,
    segment_labels: Mapping[int, str] | None = None,
    property_codes: Mapping[int, tuple[Any, Any]] | None = None,
    algorithm: str | None = None,
    algorithm_version: str = "",
    series_description: str | None = None,
    series_number: int | None = None,
    overwrite: bool = False,
) -> SegExportResult:
    """Write a label map as a DICOM SEG referencing the series it was drawn on.

    Parameters
    ----------
    mask : Volume or ndarray
        Integer labels (0 is background) indexed (i, j, k) on the source's grid; each other value becomes a
        segment (e.g. a napari Labels layer holding edema 4, enhancing rim 5 and necrosis 6 gives three
        segments). A Volume's affine is checked against the source slice positions.
    out_path : path-like
        The ``.dcm`` file to write (its folder is created).
    source : Volume, path-like or list of pydicom Dataset
        The DICOM series the mask was drawn on: a Volume read from DICOM, a DICOM folder or file; single-frame
        images or one multi-frame (Enhanced MR) image.
    source_series_uid : str, optional
        Which series of a folder holding several.
    segment_labels : mapping of int to str, optional
        Names of the label values. Default: a label map's own names (a Volume of modality "labels" with
        ``provenance["labels"]``, as the phantom's), else "segment N".
    property_codes : mapping of int to (Code, Code), optional
        SegmentedPropertyCategory and SegmentedPropertyType codes of label values; default
        :func:`segment_codes` of each name.
    algorithm : str, optional
        The model that made the mask (e.g. "MedSAM2"); None records a manual segmentation.
    algorithm_version : str
        Its version or checkpoint hash.
    series_description : str, optional
        Default "SEG <names> by <algorithm>" ("SEG of SYNTHETIC ..." for a synthetic source).
    series_number : int, optional
        Default: the source's SeriesNumber + 2000.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    SegExportResult

    Raises
    ------
    ExportError
        The source is not DICOM, is a synthetic image whose own series was not exported, is a multi-frame image
        without per-frame plane positions or with several frames per slice, or the file exists.
    GeometryMismatchError
        The mask is not on the source series' grid.
    InvalidVolumeError
        The mask holds no segment, or values that are not whole numbers.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    from .dicom_write_common import _version

    out = Path(out_path)
    if out.exists() and not overwrite:
        raise ExportError("file exists; pass overwrite=True to replace it", out)
    src, headers, header_synthetic = _dicom_source(source, source_series_uid)
    labels, values = _mask_labels(mask)
    if isinstance(mask, Volume) and isinstance(source, Volume) and not mask.same_grid(src):
        raise GeometryMismatchError("the mask is not on the grid of the image it is said to be drawn on", mask.path)
    grid = _source_grid(headers, src.affine, src.shape[2], src.path)
    _check_grid(labels, mask.affine if isinstance(mask, Volume) else None, grid, src.path)

    names = _label_names(mask, values, segment_labels)
    frames = _seg_frames(labels, values, grid)
    descriptions = _segment_descriptions(values, names, property_codes, algorithm, algorithm_version)
    what = ", ".join(names[v] for v in values)
    series_description = _seg_series_description(series_description, what, algorithm, header_synthetic)
    src_number = headers[0].get("SeriesNumber")
    number = int(series_number) if series_number is not None else (int(src_number) if src_number else 0) + 2000
    series_uid, sop_uid = str(generate_uid()), str(generate_uid())
    seg = hd.seg.Segmentation(
        source_images=headers,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="napari-medtrans",
        manufacturer_model_name="napari-medtrans",
        software_versions=_version(),
        device_serial_number="none",
        content_label="SEGMENTATION",
        content_description=(f"{what} ({'synthetic image' if header_synthetic else 'image'}"
                             + (f", {algorithm})" if algorithm else ")"))[:64],
        series_description=series_description[:64],
    )
    if header_synthetic:
        seg.SyntheticData = "YES"
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return SegExportResult(out, series_uid, sop_uid, str(headers[0].SeriesInstanceUID),
                           {n: (v, names[v]) for n, v in enumerate(values, start=1)}, header_synthetic)


def _dicom_source(source: Any, source_series_uid: str | None) -> tuple[Volume, list, bool]:
    """The image a mask was drawn on, its DICOM headers and whether they mark it synthetic.

    Refuses a source not read from DICOM, and a synthetic image that still carries the headers of the series it
    was translated from (its own series was never exported).
    """
    src = _source_volume(source, source_series_uid)
    info = src.source
    if info is None or info.kind != "dicom" or not info.dicom_datasets:
        raise ExportError("the image the mask was drawn on was not read from DICOM, so a SEG has no series to "
                          "reference; export the image as DICOM first (export_image_and_seg does both)", src.path)
    headers = list(info.dicom_datasets)
    header_synthetic = str(headers[0].get("SyntheticData", "")).upper() == "YES"
    if src.synthetic and not header_synthetic:
        raise ExportError(
            "the mask was drawn on a synthetic image, but the DICOM headers it carries are those of the series it "
            "was translated from; export the synthetic image as its own series first and pass that folder as "
            "source (export_image_and_seg does both)", src.path)
    return src, headers, header_synthetic


def _mask_labels(mask: Volume | np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The mask as int64 labels (i, j, k) and its label values other than 0, sorted; refuses what is no label map."""
    data = np.asarray(mask.data if isinstance(mask, Volume) else mask)
    if data.ndim != 3:
        raise InvalidVolumeError(f"the mask must be 3D (i, j, k), got shape {data.shape}")
    labels = np.rint(data)
    if not np.allclose(labels, data):
        raise InvalidVolumeError("the mask holds values that are not whole numbers; a SEG needs integer labels")
    labels = labels.astype(np.int64)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values or min(values) < 0:
        raise InvalidVolumeError("the mask holds no segment (every voxel is 0)" if not values else
                                 "the mask holds negative labels")
    return labels, values


def _seg_frames(labels: np.ndarray, values: list[int], grid: _Grid) -> np.ndarray:
    """The SEG's pixel array: segment numbers 1..n (label-map style), one frame per source image (frame)."""
    # label-map style: consecutive segment numbers 1..n, frames in the source's slice order (rows = j)
    lut = np.zeros(max(values) + 1, np.uint16 if len(values) > 255 else np.uint8)
    for n, v in enumerate(values, start=1):
        lut[v] = n
    frames = lut[labels].transpose(2, 1, 0)
    if grid.multi_frame:  # SEG frame f goes with source frame f (highdicom takes the plane positions from it)
        frames = frames[np.argsort(grid.frame_of_slice)]
    return np.ascontiguousarray(frames)


def _segment_descriptions(values: list[int], names: dict[int, str],
                          property_codes: Mapping[int, tuple[Any, Any]] | None, algorithm: str | None,
                          algorithm_version: str) -> list:
    """One highdicom SegmentDescription per label value: its name, codes and the algorithm (or MANUAL)."""
    import highdicom as hd

    kind = hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if algorithm else hd.seg.SegmentAlgorithmTypeValues.MANUAL
    ident = None
    if algorithm:
        from pydicom.sr.codedict import codes

        ident = hd.AlgorithmIdentificationSequence(name=str(algorithm)[:64],
                                                   family=codes.cid7162.ArtificialIntelligence,
                                                   version=str(algorithm_version or "unknown")[:64])
    descriptions = []
    for n, v in enumerate(values, start=1):
        category, prop = (property_codes or {}).get(v) or segment_codes(names[v])
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=names[v][:64], segmented_property_category=category,
            segmented_property_type=prop, algorithm_type=kind, algorithm_identification=ident))
    return descriptions


def _seg_series_description(series_description: str | None, what: str, algorithm: str | None,
                            header_synthetic: bool) -> str:
    """The SEG's SeriesDescription: the one given, else "SEG <names> by <algorithm>"; marked for a synthetic source."""
    if series_description is None:
        series_description = f"SEG {what}" + (f" by {algorithm}" if algorithm else "")
        if header_synthetic:
            series_description = f"SEG of SYNTHETIC image: {what}" + (f" by {algorithm}" if algorithm else "")
    elif header_synthetic and "SYNTHETIC" not in series_description.upper():
        series_description = f"SEG of SYNTHETIC {series_description}"
    return series_description


def read_dicom_seg(path: str | os.PathLike, reference: Volume, *, values: Mapping[int, int] | None = None) -> Volume:
    """Read a SEG back as a label Volume on the grid of the series it references.

    Parameters
    ----------
    path : path-like
        The SEG file.
    reference : Volume
        The referenced series, read from DICOM (its headers give the slice order): single-frame images or one
        multi-frame image.
    values : mapping of int to int, optional
        Segment number -> label value (e.g. from :attr:`SegExportResult.segments`); default: the segment number.

    Returns
    -------
    Volume
        Labels (float32) on ``reference``'s grid, modality "segmentation".

    Raises
    ------
    ExportError
        The file is not a SEG of ``reference``.
    """
    import highdicom as hd

    p = Path(path)
    try:
        seg = hd.seg.segread(p)
    except Exception as exc:  # highdicom raises several types for a file that is not a SEG
        raise ExportError(f"not a readable DICOM SEG ({type(exc).__name__}: {exc})", p) from None
    headers = list(reference.source.dicom_datasets) if reference.source is not None else []
    uids = [str(h.SOPInstanceUID) for h in headers]
    refs = {str(u) for _, _, u in seg.get_source_image_uids()}
    if not uids or not set(uids) & refs:
        raise ExportError("the SEG does not reference the given series", p)
    grid = _source_grid(headers, reference.affine, reference.shape[2], reference.path)
    if grid.multi_frame:
        arr = seg.get_pixels_by_source_frame(uids[0], [f + 1 for f in grid.frame_of_slice], combine_segments=True,
                                             assert_missing_frames_are_empty=True)
    else:
        arr = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    arr = np.asarray(arr).transpose(2, 1, 0).astype(np.int64)
    if values:
        lut = np.zeros(int(arr.max()) + 1, np.int64)
        for n in range(1, lut.size):
            lut[n] = int(values.get(n, n))
        arr = lut[arr]
    return reference.derive(arr.astype(np.float32), modality="segmentation", synthetic=reference.synthetic,
                            provenance={"dicom_seg": str(p)})


def export_image_and_seg(
    image: Volume,
    mask: Volume | np.ndarray,
    out_dir: str | os.PathLike,
    *,
    segment_labels: Mapping[int, str] | None = None,
    algorithm: str | None = None,
    algorithm_version: str = "",
    method: str | None = None,
    checkpoint_sha256: str | None = None,
    deidentify: bool = False,
) -> tuple[Any, SegExportResult]:
    """Export the image a mask was drawn on as a DICOM series (synthetic images marked as such), then the SEG
    referencing it: ``out_dir/image/IM*.dcm`` and ``out_dir/seg.dcm``.

    Use it when the image is synthetic or was not read from DICOM (NIfTI, phantom). The image series joins its
    source study when there is one (see :func:`~napari_medtrans.core.io.dicom_export.export_dicom_series`).

    Returns
    -------
    (ExportResult, SegExportResult)
    """
    from . import load
    from .dicom_export import export_dicom_series

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ExportError("folder is not empty; export into a new or empty folder", out)
    # The segmented image goes with its mask whether it is acquired or synthetic (the marks follow the volume).
    series = export_dicom_series(image, out / "image", method=method, checkpoint_sha256=checkpoint_sha256,
                                 deidentify=deidentify, allow_non_synthetic=True)
    written = load(out / "image")
    data = np.asarray(mask.data if isinstance(mask, Volume) else mask, dtype=np.float32)
    if data.shape != image.shape:
        raise GeometryMismatchError(f"the mask has shape {data.shape}, the image {image.shape}", image.path)
    # The series holds the image's voxels, possibly with its slices in another order: carry the mask over.
    seg_mask = written.derive(_onto_grid(data, image.affine, written.affine, written.shape, image.path))
    names = {**_own_label_names(mask), **dict(segment_labels or {})}  # the carried-over mask lost its own
    seg = export_dicom_seg(seg_mask, out / "seg.dcm", source=written, segment_labels=names or None,
                           algorithm=algorithm, algorithm_version=algorithm_version)
    return series, seg


def _onto_grid(data: np.ndarray, from_affine, to_affine, to_shape, where) -> np.ndarray:
    """Voxels of one grid on another grid of the same voxels (axes permuted or reversed); no resampling."""
    m = np.linalg.inv(np.asarray(to_affine, float)) @ np.asarray(from_affine, float)
    r = np.rint(m[:3, :3])
    if np.abs(m[:3, :3] - r).max() > 1e-3 or not np.array_equal(np.abs(r).sum(axis=0), np.ones(3)):
        raise GeometryMismatchError("the exported series is not on the image's grid", where)
    perm = [int(np.flatnonzero(r[a])[0]) for a in range(3)]
    out = data.transpose(perm)
    for a in range(3):
        if r[a, perm[a]] < 0:
            out = np.flip(out, a)
    if out.shape != tuple(to_shape):
        raise GeometryMismatchError("the exported series is not on the image's grid", where)
    return np.ascontiguousarray(out)
