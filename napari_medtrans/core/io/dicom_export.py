"""Export a (synthetic) Volume as a derived DICOM MR series of its source study, marked so that nobody takes it
for an acquired scan.

What goes into every file
-------------------------
* **Patient, study, frame of reference.** Copied from the first source header (a fixed list of attributes, see
  :data:`PATIENT_STUDY_KEYWORDS`; nothing else is copied, private tags never). The series is new (new
  SeriesInstanceUID); the study is the source's. Without a DICOM source (NIfTI input) a new study and a new
  frame of reference are made, and the patient is whatever ``patient_name`` / ``patient_id`` say.
* **Geometry per slice** from ``volume.affine`` (RAS, converted to LPS): ImageOrientationPatient,
  PixelSpacing, one ImagePositionPatient per slice along the volume's k axis
  (:func:`~napari_medtrans.core.io.orientation.dicom_geometry_from_affine`), so that our reader and dcm2niix
  give back the volume's affine. The frame of reference is the source's: the volume's coordinates are taken to
  be the source patient's (true for anything translated from it, including a NIfTI converted from it).
* **Synthetic marking** (when ``volume.synthetic`` or ``synthetic=True``): ImageType ``DERIVED\\SECONDARY\\OTHER``,
  SyntheticData (0008,001C) ``YES``, SeriesDescription starting with ``SYNTHETIC``, ImageComments saying the image
  was computed, ScanningSequence ``RM`` (research mode) with the acquisition timing left empty (no sequence was
  run), and a DerivationDescription naming the method, the checkpoint's sha256, the input contrast(s) and the
  software version.
* **Source images referenced.** SourceImageSequence (0008,2112) in every file lists the source slices (and
  frames, for Enhanced MR sources) whose slab the exported slice passes through (within half the source slice
  spacing), with the purpose code (121322, DCM, "Source image for image processing operation"). When the volume
  does not overlap the source at all, the nearest source slice is referenced and
  :attr:`ExportResult.geometry_matches_source` is False.
* **File names** are made here (``IM00001.dcm``, ...), never from header values. The output folder must be new
  or empty, so two series are never mixed in one folder.

De-identification (``deidentify=True``)
---------------------------------------
A subset of the DICOM PS3.15 Annex E *Basic Application Level Confidentiality Profile* fitted to what this
exporter writes. Because the files are built from scratch and only the attributes listed in
:data:`PATIENT_STUDY_KEYWORDS` are ever taken from the source, the profile reduces to:

* replaced by a dummy value: PatientName, PatientID (``"ANONYMOUS"`` unless ``patient_name`` / ``patient_id``
  are given);
* emptied (Type 2 attributes the IOD needs): PatientBirthDate, PatientSex, StudyDate, StudyTime,
  ReferringPhysicianName, StudyID, AccessionNumber;
* removed: every other patient, patient-study and study attribute of the list (other IDs and names, age,
  size, weight, comments, ethnic group, study description, physicians, ...), and the dates and times of the
  new series and instances;
* UIDs replaced: StudyInstanceUID, FrameOfReferenceUID and every referenced SOPInstanceUID are mapped to
  ``2.25.`` UIDs derived from the original UID and a salt (random per export unless ``uid_salt`` is given, so
  that the same salt maps a study to the same new UID every time); SeriesInstanceUID and SOPInstanceUID are
  new anyway;
* recorded: PatientIdentityRemoved ``YES``, DeidentificationMethod, DeidentificationMethodCodeSequence
  (113100, DCM, "Basic Application Confidentiality Profile") and LongitudinalTemporalInformationModified
  ``REMOVED``.

Pixel values carry no burned-in text (BurnedInAnnotation ``NO``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomReadError, ExportError, GeometryError, InvalidVolumeError, MultipleSeriesError
from ..volume import Volume
from .orientation import dicom_geometry_from_affine

__all__ = ["ExportResult", "export_dicom_series", "PATIENT_STUDY_KEYWORDS", "derivation_description"]

#: Attributes copied from the source header: Patient, Patient Study, General Study, Frame of Reference modules
#: (and the character set they are encoded in). Nothing else is copied.
PATIENT_STUDY_KEYWORDS = (
    "SpecificCharacterSet",
    "TimezoneOffsetFromUTC",
    # Patient
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "OtherPatientIDsSequence", "OtherPatientNames", "EthnicGroup", "PatientComments",
    "PatientSpeciesDescription", "PatientBreedDescription", "ResponsiblePerson", "QualityControlSubject",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # Patient Study
    "PatientAge", "PatientSize", "PatientWeight", "AdditionalPatientHistory", "PregnancyStatus",
    # General Study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "ProcedureCodeSequence", "AdmittingDiagnosesDescription",
    # Frame of Reference
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # General Series attributes describing the patient's position (needed to read the geometry the same way)
    "PatientPosition", "BodyPartExamined",
)
#: Kept under de-identification, set to a dummy value.
_DUMMY = ("PatientName", "PatientID")
#: Kept under de-identification, emptied (Type 2 in the IOD).
_EMPTIED = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
            "AccessionNumber")
#: Kept as they are under de-identification (no identifying content).
_KEPT = ("SpecificCharacterSet", "PatientPosition", "BodyPartExamined", "PositionReferenceIndicator")
_UID_MAPPED = ("StudyInstanceUID", "FrameOfReferenceUID")
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_dicom_series` wrote.

    Attributes
    ----------
    files : list of Path
        One file per slice, in k order.
    study_instance_uid, series_instance_uid, frame_of_reference_uid : str
        UIDs of the new series (the study is the source's unless ``new_study`` or ``deidentified``).
    new_study : bool
        True when there was no DICOM source and a new study was made.
    deidentified : bool
        True when patient identifiers were removed.
    n_referenced : int
        Number of distinct source images (frames) referenced.
    geometry_matches_source : bool
        True when every exported slice passes through the source volume (False also when there is no source).
    """

    files: list[Path]
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    new_study: bool
    deidentified: bool
    n_referenced: int
    geometry_matches_source: bool


def derivation_description(
    volume: Volume, method: str | None = None, checkpoint_sha256: str | None = None, synthetic: bool = True
) -> str:
    """The DerivationDescription text (at most 1024 characters).

    For a synthetic volume: the method, the checkpoint's sha256, the input contrast(s) and the software; for
    another volume (a re-export) only that it was re-encoded by this software.
    """
    from ... import __version__

    if not synthetic:
        return f"{volume.modality or 'image'} re-exported by napari-medtrans {__version__} (16-bit rescaled)"
    prov = volume.provenance or {}
    method = method or prov.get("method") or "unknown method"
    sha = checkpoint_sha256 or prov.get("checkpoint_sha256") or "none (untrained or unknown model)"
    inputs = prov.get("input_modalities") or []
    src = f" from {'+'.join(str(m) for m in inputs)}" if inputs else ""
    text = (
        f"SYNTHETIC {volume.modality or 'image'} computed{src} by {method}; checkpoint sha256 {sha}; "
        f"napari-medtrans {__version__}. Not an acquired image."
    )
    return text[:1024]


def export_dicom_series(
    volume: Volume,
    out_dir: str | os.PathLike,
    *,
    source: Any = None,
    source_series_uid: str | None = None,
    method: str | None = None,
    checkpoint_sha256: str | None = None,
    series_description: str | None = None,
    series_number: int | None = None,
    deidentify: bool = False,
    patient_name: str | None = None,
    patient_id: str | None = None,
    uid_salt: str | None = None,
    synthetic: bool | None = None,
) -> ExportResult:
    """Write ``volume`` as a new derived MR series of its source study (see the module notes).

    Parameters
    ----------
    volume : Volume
        What to export. Its affine gives the geometry of every slice (slices along k).
    out_dir : path-like
        Folder to write into; created if needed, and it must be empty.
    source : Volume, path-like, list of pydicom Dataset, or None
        The DICOM series the volume was made from: a Volume read from DICOM (its kept headers are used), a
        DICOM folder or file, or the headers themselves. None uses ``volume.source`` when that is DICOM, else
        makes a new study.
    source_series_uid : str, optional
        Which series of a source folder holding several.
    method, checkpoint_sha256 : str, optional
        For DerivationDescription; default ``volume.provenance["method"]`` / ``["checkpoint_sha256"]``.
    series_description : str, optional
        Default ``"SYNTHETIC <modality> by <method>"``. A synthetic export always starts with "SYNTHETIC"
        (prepended when missing). At most 64 characters are kept.
    series_number : int, optional
        Default: the source's SeriesNumber + 1000 (1000 without a source).
    deidentify : bool
        Remove patient identifiers and replace UIDs (module notes, "De-identification").
    patient_name, patient_id : str, optional
        Patient for a new study (no DICOM source), or the dummy values under de-identification.
    uid_salt : str, optional
        Salt of the UID mapping under de-identification (random when None).
    synthetic : bool, optional
        Force the synthetic marking on (True) for a volume not flagged synthetic. A volume flagged synthetic
        is always marked.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportError
        The output folder is not empty or is a file.
    InvalidVolumeError
        NaN or infinite voxels.
    GeometryError
        An affine DICOM cannot express (skewed in-plane axes).
    DicomReadError, MultipleSeriesError, NoDicomError
        The source cannot be read, or holds several series and ``source_series_uid`` is not given.
    """
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from .dicom_write import _save, _to_stored

    if not isinstance(volume, Volume):
        raise TypeError(f'Argument "volume" must be a Volume, got {type(volume).__name__}.')
    data = np.asarray(volume.data)
    if not np.all(np.isfinite(data)):
        raise InvalidVolumeError("cannot export: the volume holds NaN or infinite voxels", volume.path)
    out = _prepare_out_dir(out_dir)
    nx, ny, nz = data.shape
    try:
        geom = dicom_geometry_from_affine(volume.affine, nz)
    except ValueError as exc:
        raise GeometryError(f"cannot export to DICOM: {exc}", volume.path) from exc
    headers = _source_headers(volume, source, source_series_uid)
    is_synthetic = bool(volume.synthetic or synthetic)
    salt = uid_salt if uid_salt is not None else generate_uid()

    def mapped(uid: str) -> str:
        return _hashed_uid(str(salt), str(uid)) if deidentify else str(uid)

    frames = _source_frames(headers)
    refs, matches = _references(frames, geom, (nx, ny), _half_slab(frames))
    stored, slope, intercept, signed = _to_stored(data, True, volume.path)
    stack = np.ascontiguousarray(stored.transpose(2, 1, 0))

    ds = _base_dataset(headers[0] if headers else None, deidentify, patient_name, patient_id, mapped)
    study_uid = str(ds.StudyInstanceUID) if "StudyInstanceUID" in ds else ""
    if not study_uid:
        study_uid = str(generate_uid())
        ds.StudyInstanceUID = study_uid
    for_uid = str(ds.get("FrameOfReferenceUID", "") or "")
    if not for_uid:
        for_uid = str(generate_uid())
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
    series_uid = str(generate_uid())
    src_number = _int_or_none(headers[0].get("SeriesNumber")) if headers else None
    number = int(series_number) if series_number is not None else (src_number or 0) + 1000
    description = _series_description(volume, series_description, method, is_synthetic)
    now = None if deidentify else _dt.datetime.now()
    _series_and_image(ds, volume, geom, series_uid, number, description, is_synthetic, now,
                      derivation_description(volume, method, checkpoint_sha256, is_synthetic))
    _pixel_attributes(ds, data, ny, nx, slope, intercept, signed)

    paths = []
    for k in range(nz):
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in geom["positions"][k]]
        ds.SliceLocation = _ds(geom["slice_locations"][k])
        if frames:
            ds.SourceImageSequence = _reference_items([frames[i] for i in refs[k]], mapped)
        path = out / f"IM{k + 1:05d}.dcm"
        _save(ds, path, ExplicitVRLittleEndian, stack[k])
        paths.append(path)
    return ExportResult(
        files=paths,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frame_of_reference_uid=for_uid,
        new_study=not headers,
        deidentified=bool(deidentify),
        n_referenced=len({i for r in refs for i in r}),
        geometry_matches_source=bool(headers) and matches,
    )


# -- source -----------------------------------------------------------------------------------------------


def _prepare_out_dir(out_dir) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError("is a file; DICOM export needs a folder", out)
    if out.is_dir() and any(out.iterdir()):
        raise ExportError("folder is not empty; export a series into a new or empty folder so that no two "
                          "series are mixed", out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _source_headers(volume: Volume, source: Any, series_uid: str | None) -> list:
    """The source series' headers in slice order ([] for none)."""
    if source is None:
        src = volume.source
        if src is not None and src.kind == "dicom" and src.dicom_datasets:
            return list(src.dicom_datasets)
        return []
    if isinstance(source, Volume):
        if source.source is None or source.source.kind != "dicom" or not source.source.dicom_datasets:
            raise ExportError("the source volume was not read from DICOM, so it has no study to export into",
                              source.path)
        return list(source.source.dicom_datasets)
    if isinstance(source, (list, tuple)) and source and hasattr(source[0], "get"):
        return list(source)
    from .dicom import scan_dicom

    found = scan_dicom(source)
    if found.unreadable:
        path, reason = found.unreadable[0]
        raise DicomReadError(f"cannot read DICOM file: {reason}", path)
    if not found:
        from .dicom import _raise_no_dicom

        _raise_no_dicom(found, os.fspath(source))
    if series_uid is not None:
        chosen = [s for s in found if s.series_instance_uid == str(series_uid)]
        if not chosen:
            known = ", ".join(s.series_instance_uid for s in found)
            raise DicomReadError(f"no series with SeriesInstanceUID {series_uid}; found: {known}", source)
    elif len(found) > 1:
        raise MultipleSeriesError(os.fspath(source), found)
    else:
        chosen = found
    return list(chosen[0].headers)


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


# -- dataset ----------------------------------------------------------------------------------------------


def _base_dataset(src, deidentify: bool, patient_name, patient_id, mapped):
    """A Dataset with the patient, study and frame-of-reference attributes (copied, de-identified or new)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    ds = Dataset()
    if src is not None:
        for kw in PATIENT_STUDY_KEYWORDS:
            if kw not in src:
                continue
            if deidentify and kw not in _DUMMY + _EMPTIED + _KEPT + _UID_MAPPED:
                continue
            elem = copy.deepcopy(src[kw])
            ds[elem.tag] = elem
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
               "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if kw not in ds:
            setattr(ds, kw, "")
    if patient_name is not None:
        ds.PatientName = str(patient_name)
    if patient_id is not None:
        ds.PatientID = str(patient_id)
    if src is None and not deidentify:
        now = _dt.datetime.now()
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    if deidentify:
        for kw in _DUMMY:
            if kw == "PatientName" and patient_name is None or kw == "PatientID" and patient_id is None:
                setattr(ds, kw, "ANONYMOUS")
        for kw in _EMPTIED:
            setattr(ds, kw, "")
        for kw in _UID_MAPPED:
            if kw in ds and str(ds.get(kw) or ""):
                setattr(ds, kw, mapped(str(ds.get(kw))))
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "napari-medtrans: PS3.15 E.1.1 Basic Profile, UIDs remapped"  # LO: 64 max
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = DicomSequence([code])
    return ds


def _series_description(volume: Volume, given: str | None, method: str | None, synthetic: bool) -> str:
    method = method or (volume.provenance or {}).get("method")
    text = given or (f"{volume.modality or 'image'}" + (f" by {method}" if method else ""))
    if synthetic and not text.upper().startswith("SYNTHETIC"):
        text = f"SYNTHETIC {text}"
    return text[:64]


def _series_and_image(ds, volume, geom, series_uid, number, description, synthetic, now, derivation) -> None:
    from ... import __version__

    if now is not None:
        date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        ds.SeriesDate, ds.SeriesTime = date, time
        ds.ContentDate, ds.ContentTime = date, time
    ds.SOPClassUID = _MR_IMAGE_STORAGE
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    if "PatientPosition" not in ds:
        ds.PatientPosition = ""
    ds.Manufacturer = "napari-medtrans"
    ds.ManufacturerModelName = "contrast translation"
    ds.SoftwareVersions = f"napari-medtrans {__version__}"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.DerivationDescription = derivation
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if synthetic:
        ds.SyntheticData = "YES"
        ds.ImageComments = "SYNTHETIC image computed by a contrast-translation model; not acquired"
    ds.ImageOrientationPatient = [_ds(v) for v in geom["iop"]]
    ds.PixelSpacing = [_ds(v) for v in geom["pixel_spacing"]]
    ds.SliceThickness = _ds(geom["slice_spacing"])
    ds.SpacingBetweenSlices = _ds(geom["slice_spacing"])
    # MR Image module: nothing was acquired, so research mode and empty (Type 2) timing.
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = ""
    ds.RepetitionTime = None
    ds.EchoTime = None
    ds.EchoTrainLength = None


def _pixel_attributes(ds, data, rows, cols, slope, intercept, signed) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    ds.RescaleType = "US"
    lo, hi = (float(np.percentile(data, 1)), float(np.percentile(data, 99))) if data.size else (0.0, 1.0)
    ds.WindowCenter = _ds((lo + hi) / 2)
    ds.WindowWidth = _ds(max(hi - lo, 1e-3))


def _hashed_uid(salt: str, uid: str) -> str:
    """A ``2.25.`` UID (UUID as an integer, ISO/IEC 9834-8) derived from ``salt`` and ``uid`` by sha256."""
    import hashlib

    digest = bytearray(hashlib.sha256(f"{salt}\x00{uid}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8 (custom) UUID
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return f"2.25.{int.from_bytes(bytes(digest), 'big')}"


def _ds(value: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
