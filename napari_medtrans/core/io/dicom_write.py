"""Plain DICOM writer: a Volume as an MR Image Storage series (one file per slice) or one Enhanced MR file.

This writer serves the phantom (``medtrans phantom --dicom``) and tests. It builds a new patient, study and
series from the arguments; exporting a translated series into its source study, with references and the full
synthetic marking, is :mod:`napari_medtrans.core.io.dicom_export`'s job.

Geometry comes from ``volume.affine`` (RAS, converted to LPS): ImageOrientationPatient from the i and j axes,
PixelSpacing from their lengths, and one ImagePositionPatient per slice along the k axis, so that
:func:`napari_medtrans.core.io.dicom.read_dicom_series` (and dcm2niix) give back the same affine. Voxels are stored
as 16-bit integers with RescaleSlope/RescaleIntercept chosen so that the relative error stays below 2e-5 of the
largest absolute value (zero is kept exact); integer-valued data in the 16-bit range is stored as is.

A volume without voxels or with NaN/infinite voxels is refused before anything is written; should writing fail
half way, the files written and the folders made are removed again (:class:`_OutputFiles`, which the exporter
uses too).

The single-frame series is built and written here, for this writer and the exporter alike, the way highdicom
builds a derived series: from a header carrying the patient, study and frame of reference. The exporter's
header is reduced from its source series (or de-identified); :func:`write_dicom_series` makes one from its
arguments (:func:`~.dicom_write_common._patient_study_header`). :func:`_slice_template` adds the SOP class, the
plane geometry every slice shares, the pixel description with its rescale and the window; each writer adds its
series, image and MR attributes; :func:`_write_slices` writes one file per slice (new SOPInstanceUID,
InstanceNumber, ImagePositionPatient, SliceLocation, the exporter's references) with :func:`_save`, atomically
(:class:`_OutputFiles`). The attributes every dataset of this writer shares are made in
:mod:`.dicom_write_common`; the Enhanced MR file, which shares no per-slice dataset, in :mod:`.dicom_enhanced`.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np

from ..errors import GeometryError, InvalidVolumeError
from ..volume import Volume
from .dicom_enhanced import _enhanced_dataset
from .dicom_write_common import (
    MR_DEFAULTS,
    _Context,
    _ds_str,
    _image_pixel,
    _mr_parameters,
    _patient_study_header,
    _series_and_equipment,
    _voi_window,
)
from .dicom_write_common import _version  # noqa: F401 - re-exported: it was defined here
from .orientation import dicom_geometry_from_affine

__all__ = ["write_dicom_series", "MR_DEFAULTS"]


def write_dicom_series(
    volume: Volume,
    out_dir: str | os.PathLike,
    *,
    series_description: str,
    modality_label: str | None = None,
    patient_name: str = "PHANTOM^SUBJECT",
    patient_id: str = "PHANTOM",
    study_instance_uid: str | None = None,
    series_number: int = 1,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    enhanced: bool = False,
    synthetic: bool | None = None,
    rescale: bool = True,
    frame_of_reference_uid: str | None = None,
) -> list[Path]:
    """Write ``volume`` as a DICOM MR series and return the paths written (in k order).

    Parameters
    ----------
    volume : Volume
        The volume to write; its affine gives the geometry of every slice.
    out_dir : path-like
        Folder to write into (created if needed). File names are made here (``S{series}_I{slice}.dcm``, or
        ``S{series}_enhanced.dcm``), never taken from header values.
    series_description : str
        SeriesDescription (0008,103E).
    modality_label : str, optional
        Contrast written as ProtocolName ("T1", "T2", "FLAIR", "PD", "T1c"); defaults to ``volume.modality``.
        It also picks the default acquisition parameters (:data:`MR_DEFAULTS`); ``volume.provenance
        ["mr_parameters"]`` (a dict with keys such as RepetitionTime, EchoTime, InversionTime,
        MagneticFieldStrength, ScanningSequence) overrides them.
    patient_name, patient_id : str
        Patient module values.
    study_instance_uid : str, optional
        Study to put the series in; a new study when omitted.
    series_number : int
        SeriesNumber, also used in the file names.
    transfer_syntax : str or pydicom UID
        Explicit VR Little Endian ("1.2.840.10008.1.2.1") by default. Any syntax pydicom can encode works (RLE Lossless, JPEG-LS,
        JPEG 2000 lossless with the installed plugins).
    enhanced : bool
        Write one Enhanced MR Image Storage file with per-frame functional groups instead of one file per slice.
    synthetic : bool, optional
        Mark the series as synthetic (SyntheticData "YES", ImageType DERIVED). A synthetic volume is always
        marked; ``synthetic=True`` marks a volume that is not flagged.
    rescale : bool
        Choose RescaleSlope/RescaleIntercept to keep the float values. With ``False`` the data must already be
        integers in the int16 or uint16 range and is stored unscaled (slope 1, intercept 0).
    frame_of_reference_uid : str, optional
        FrameOfReferenceUID. By default it is derived from the study UID, so the series of one study share
        one frame of reference.

    Returns
    -------
    list of pathlib.Path
        The files written, in slice (k) order.

    Raises
    ------
    InvalidVolumeError
        No voxels, NaN/inf voxels, or ``rescale=False`` with data that are not 16-bit integers.
    GeometryError
        An affine DICOM cannot express (skewed in-plane axes, k axis in the slice plane).
    """
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ts = ExplicitVRLittleEndian if transfer_syntax is None else transfer_syntax
    data, geom = _checked_volume(volume)
    stored, slope, intercept, signed = _to_stored(data, rescale, volume.path)

    label = modality_label if modality_label is not None else volume.modality
    is_synthetic = bool(volume.synthetic or synthetic)
    study_uid = study_instance_uid or generate_uid()
    for_uid = frame_of_reference_uid or generate_uid(entropy_srcs=[str(study_uid), "frame-of-reference"])
    ctx = _Context(
        volume=volume,
        geom=geom,
        label=label,
        synthetic=is_synthetic,
        study_uid=str(study_uid),
        series_uid=generate_uid(),
        for_uid=str(for_uid),
        series_description=series_description,
        patient_name=patient_name,
        patient_id=patient_id,
        series_number=int(series_number),
        slope=slope,
        intercept=intercept,
        signed=signed,
        value_range=(float(data.min()), float(data.max())),
        now=_dt.datetime.now(),
    )
    return _write_files(ctx, stored, Path(out_dir), ts, enhanced)


def _checked_volume(volume: Volume) -> tuple[np.ndarray, dict]:
    """The voxels of ``volume`` and the DICOM geometry of its affine; refuses what cannot be written."""
    data = np.asarray(volume.data)
    if data.size == 0:
        raise InvalidVolumeError(f"cannot write DICOM: the volume has no voxels (shape {tuple(data.shape)})",
                                 volume.path)
    if not np.all(np.isfinite(data)):
        raise InvalidVolumeError("cannot write DICOM: the volume holds NaN or infinite voxels", volume.path)
    nx, ny, nz = data.shape
    try:
        geom = dicom_geometry_from_affine(volume.affine, nz)
    except ValueError as exc:
        raise GeometryError(f"cannot write DICOM: {exc}", volume.path) from exc
    return data, geom


def _write_files(ctx: _Context, stored: np.ndarray, out: Path, ts, enhanced: bool) -> list[Path]:
    """Write the series into ``out``: one Enhanced MR file, or one file per slice (in k order)."""
    from pydicom.uid import generate_uid

    if enhanced:
        with _OutputFiles(out) as written:
            path = written.add(out / f"S{ctx.series_number:03d}_enhanced.dcm")
            ds = _enhanced_dataset(ctx, stored, generate_uid())
            _save(ds, path, ts, np.ascontiguousarray(stored.transpose(2, 1, 0)))
            return [path]
    # The new patient and study as a source-like header, fed to the builder the exporter uses too.
    nx, ny, _ = stored.shape
    ds = _slice_template(_patient_study_header(ctx), ctx.geom, ny, nx, slope=ctx.slope, intercept=ctx.intercept,
                         signed=ctx.signed, window=ctx.value_range)
    _series_and_equipment(ds, ctx)
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"] if ctx.synthetic else ["ORIGINAL", "PRIMARY", "OTHER"]
    _mr_image(ds, ctx)
    return _write_slices(out, ds, ctx.geom, stored, lambda k: f"S{ctx.series_number:03d}_I{k + 1:04d}.dcm", ts)


def _mr_image(ds, ctx) -> None:
    """The MR Image module of the plain writer: the acquisition parameters of the contrast (:data:`MR_DEFAULTS`)."""
    params = _mr_parameters(ctx)
    ds.ScanningSequence = params["ScanningSequence"]
    ds.SequenceVariant = params["SequenceVariant"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = _ds_str(params["RepetitionTime"])
    ds.EchoTime = _ds_str(params["EchoTime"])
    if "InversionTime" in params:
        ds.InversionTime = _ds_str(params["InversionTime"])
    ds.EchoTrainLength = 1
    ds.FlipAngle = _ds_str(params["FlipAngle"])
    ds.MagneticFieldStrength = _ds_str(params["MagneticFieldStrength"])
    ds.ImagedNucleus = "1H"
    ds.NumberOfAverages = "1"
    if "SequenceName" in params:
        ds.SequenceName = str(params["SequenceName"])[:16]


# -- the single-frame series builder and writer, shared with the exporter -----------------------------------


def _slice_template(header, geom: dict, rows: int, cols: int, *, slope: float, intercept: float, signed: bool,
                    window: tuple[float, float]):
    """The dataset every file of a single-frame MR Image Storage series starts from.

    ``header`` carries the patient, study and frame of reference: a source series' header reduced to those
    attributes (the exporter) or one made from the arguments (:func:`write_dicom_series`); it is copied, not
    changed. Added here: the SOP class, the Image Plane attributes every slice shares (``geom`` from
    :func:`~.orientation.dicom_geometry_from_affine`), the Image Pixel attributes with the rescale of the stored
    16-bit values, and the VOI window spanning ``window`` (lo, hi). The caller adds its series, image and MR
    attributes; :func:`_write_slices` writes one file per slice with the per-slice attributes.
    """
    import copy

    from pydicom.dataset import Dataset
    from pydicom.uid import MRImageStorage

    ds = Dataset()
    for elem in header:
        ds[elem.tag] = copy.deepcopy(elem)
    ds.SOPClassUID = MRImageStorage
    ds.ImageOrientationPatient = [_ds_str(v) for v in geom["iop"]]
    ds.PixelSpacing = [_ds_str(v) for v in geom["pixel_spacing"]]
    ds.SliceThickness = _ds_str(geom["slice_spacing"])
    ds.SpacingBetweenSlices = _ds_str(geom["slice_spacing"])
    _image_pixel(ds, rows, cols, signed)
    ds.RescaleIntercept = _ds_str(intercept)
    ds.RescaleSlope = _ds_str(slope)
    ds.RescaleType = "US"
    _voi_window(ds, *window)
    return ds


def _write_slices(out: Path, ds, geom: dict, stored: np.ndarray, file_name, ts, per_slice=None) -> list[Path]:
    """Write one file per slice of ``stored`` (k order) into ``out`` from the shared dataset ``ds``.

    Each file gets a new SOPInstanceUID, its InstanceNumber (k + 1), ImagePositionPatient and SliceLocation
    (from ``geom``), then whatever ``per_slice(ds, k)`` adds (the exporter's source references); its name is
    ``file_name(k)``, its transfer syntax ``ts``. Should writing fail half way, the files written and the
    folders made are removed again (:class:`_OutputFiles`).
    """
    from pydicom.uid import generate_uid

    # One (k, row, column) copy up front: slicing it is contiguous, gathering stored[:, :, k].T is not.
    stack = np.ascontiguousarray(stored.transpose(2, 1, 0))
    with _OutputFiles(out) as written:
        for k in range(stack.shape[0]):
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [_ds_str(v) for v in geom["positions"][k]]
            ds.SliceLocation = _ds_str(geom["slice_locations"][k])
            if per_slice is not None:
                per_slice(ds, k)
            path = written.add(out / file_name(k))
            _save(ds, path, ts, stack[k])
    return list(written.files)


# -- helpers ----------------------------------------------------------------------------------------------


class _OutputFiles:
    """The files one write makes in ``out``; on an error, they and the folders it made are removed again.

    ``with _OutputFiles(out) as written: path = written.add(out / name); ...`` creates ``out`` (and missing
    parents). Leaving the block by an exception (including KeyboardInterrupt) deletes every file registered
    with :meth:`add` and then each folder this block created, deepest first, where it is empty; a folder that
    existed before is never removed, and files others put there are never touched.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.files: list[Path] = []
        self.created: list[Path] = []
        self._existed: set[Path] = set()

    def __enter__(self) -> "_OutputFiles":
        missing, p = [], self.out
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        self.out.mkdir(parents=True, exist_ok=True)
        self.created = missing  # deepest first
        return self

    def add(self, path: Path) -> Path:
        """Register ``path`` before writing it, so a half-written file is removed too (unless it was there
        before: a file this write did not create is never deleted)."""
        path = Path(path)
        self.files.append(path)
        if path.exists():
            self._existed.add(path)
        return path

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        for path in reversed(self.files):
            if path in self._existed:
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # the original error matters more than a file that would not go
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (someone else's files) or gone: leave it and everything above it
        return False


def _to_stored(data: np.ndarray, rescale: bool, where) -> tuple[np.ndarray, float, float, bool]:
    """16-bit stored values plus (slope, intercept, signed) such that ``stored * slope + intercept ~ data``."""
    from pydicom.valuerep import format_number_as_ds

    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    is_int = bool(np.all(data == np.round(data)))
    if is_int and 0 <= lo and hi <= 65535:
        return data.astype(np.uint16), 1.0, 0.0, False
    if is_int and -32768 <= lo and hi <= 32767:
        return data.astype(np.int16), 1.0, 0.0, True
    if not rescale:
        raise InvalidVolumeError(
            f"rescale=False needs integer voxels in the int16 or uint16 range; values span {lo:g} to {hi:g}"
            + ("" if is_int else " and are not integers"),
            where,
        )
    signed = lo < 0
    top = 32767.0 if signed else 65535.0
    biggest = max(abs(lo), abs(hi))
    slope = float(format_number_as_ds(biggest / top * (1 + 1e-9))) if biggest > 0 else 1.0
    stored = np.clip(np.rint(data / slope), -32768 if signed else 0, top)
    return stored.astype(np.int16 if signed else np.uint16), slope, 0.0, signed


def _save(ds, path: Path, ts, pixels: np.ndarray) -> None:
    """Attach file meta and pixels, compress when asked, write ``path``."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    ts = UID(str(ts))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")
    meta.ImplementationVersionName = "MEDTRANS"
    ds.file_meta = meta
    if "PixelData" in ds:
        del ds.PixelData  # a fresh element: compression of the previous slice changed its VR and length mode
    ds.PixelData = pixels.tobytes()
    if ts.is_compressed:
        meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
        ds.compress(ts, pixels, generate_instance_uid=False)
        if "lossless" not in ts.name.lower() and ts != "1.2.840.10008.1.2.5":  # RLE is lossless
            ds.LossyImageCompression = "01"
    else:
        meta.TransferSyntaxUID = ts
        ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)
