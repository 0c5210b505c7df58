"""Export a synthetic Volume as a derived DICOM MR series of its source study, marked so that nobody takes it
for an acquired scan.

What may be exported
--------------------
The exporter writes synthetic MR images. It refuses, unless the caller asks explicitly:

* **an acquired volume** (not marked synthetic): ``allow_non_synthetic=True`` re-exports it unmarked (ImageType
  DERIVED, DerivationDescription "re-exported"); ``synthetic=True`` marks a volume that is synthetic although
  nothing says so (made by another tool). ``synthetic=False`` on a volume marked synthetic is refused: synthetic
  data is never exported unmarked;
* **a map** (error map, TSM, spread across samples, a segmentation: provenance ``"map"``, or a modality that is
  none of the MR contrasts :data:`napari_medtrans.core.volume.MODALITIES`): ``allow_maps=True`` writes it as a
  derived series whose SeriesDescription and DerivationDescription say "map";
* **a source study of another patient, or another study**: when the volume's provenance records the patient
  (``"input_patient_sha256"``, sha256 of the PatientID, see :func:`patient_id_sha256`) or the study
  (``"input_study_uid"``) it was made from and the source series says otherwise. ``allow_other_study=True``
  exports anyway. A source without a PatientID cannot be compared on the patient (the study still is).

Refusals are :class:`~napari_medtrans.core.errors.ExportError` with ``data["refused"]`` ("acquired", "map",
"patient", "study") and ``data["option"]`` (the keyword that lifts it), so front ends can name their own switch.
Everything is checked before the output folder is made: the voxels (none, NaN, infinite), what the volume is,
the folder, the geometry, the source. Should writing fail half way, the files written and the folders made are
removed (a folder that existed before is left, empty).

What goes into every file
-------------------------
* **Patient, study, frame of reference.** Copied from the first source header (a fixed list of attributes, see
  :data:`PATIENT_STUDY_KEYWORDS`; nothing else is copied, private tags never). The series is new (new
  SeriesInstanceUID); the study is the source's. Without a DICOM source (NIfTI input) a new study and a new
  frame of reference are made, and the patient is whatever ``patient_name`` / ``patient_id`` say.
* **Type 2 attributes** of the modules written (Patient, General Study, General Series, Frame of Reference,
  General Equipment, General Image, Image Plane, MR Image: :data:`TYPE2_KEYWORDS`) are always present, empty
  when the source has no value (a sparse source would otherwise give a non-conformant series). Laterality
  (Type 2C) is copied from the source, else written empty (unknown) unless BodyPartExamined names a part that
  is not paired (head, brain, spine, ...). For an animal patient the breed, the responsible person and
  organisation and whether it is neutered (Type 2C) are written empty when the source lacks them.
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
* **Window.** Centre and width from the 1st and 99th percentiles, the width at least 1 (PS3.3 C.11.2.1.2), so a
  constant volume gets a valid window too.
* **File names** are made here (``IM00001.dcm``, ...), never from header values. The output folder must be new
  or empty, so two series are never mixed in one folder.

Sources
-------
A source folder or file is read with :func:`napari_medtrans.core.io.dicom.read_dicom_series`, so it passes the
same checks as loading it (one series, one slice size, orientation and pixel spacing, no two slices at one
position, readable geometry); only uneven slice spacing is accepted, because each exported slice references the
source slices by position. Source headers given as pydicom Datasets are read again from their files when they
have them; Datasets without files are taken as they are. A Volume read from DICOM was checked when it was read.

De-identification (``deidentify=True``)
---------------------------------------
The DICOM PS3.15 Annex E *Basic Application Level Confidentiality Profile* for what this exporter writes.
:data:`DEIDENTIFICATION` lists every attribute of the profile's Table E.1-1 that the exporter handles, with the
action taken (the profile's codes: X removed, Z emptied, D replaced by a dummy value, U replaced by another UID;
where the profile allows several, the one listed). The files are built from scratch: of the source only the
attributes of :data:`PATIENT_STUDY_KEYWORDS` are ever taken, and under de-identification only those whose action
keeps them (Z, D, U) or that :data:`KEPT_UNDER_DEIDENTIFICATION` lists as carrying nothing identifying; every
other attribute (X) is simply never written. In words:

* replaced by a dummy value (D): PatientName, PatientID (``"ANONYMOUS"`` unless ``patient_name`` /
  ``patient_id`` are given);
* emptied (Z; Type 2 in the IOD): PatientBirthDate, PatientSex, StudyDate, StudyTime, ReferringPhysicianName,
  StudyID, AccessionNumber, PositionReferenceIndicator (free text that may name a landmark or a person);
* removed (X): every other patient attribute (other IDs and names, birth time, age, size, weight, address,
  telephone, ethnic group, occupation, comments, history, pregnancy, ...), the study's description, physicians,
  procedure and request attributes, the institution, station, operators and device serial number of the source,
  the time zone, and every date and time other than the study's (series, acquisition, content, instance
  creation): the dates are gone, not shifted, so LongitudinalTemporalInformationModified is ``REMOVED``;
* UIDs replaced (U): StudyInstanceUID, FrameOfReferenceUID and every referenced SOPInstanceUID are mapped to
  ``2.25.`` UIDs derived from the original UID and a salt (random per export unless ``uid_salt`` is given, so
  that the same salt maps a study to the same new UID every time); SeriesInstanceUID and SOPInstanceUID are
  new anyway;
* recorded: PatientIdentityRemoved ``YES``, DeidentificationMethod, DeidentificationMethodCodeSequence
  (113100, DCM, "Basic Application Confidentiality Profile") and LongitudinalTemporalInformationModified
  ``REMOVED``.

The texts this exporter makes itself (SeriesDescription, DerivationDescription, ImageComments, the equipment of
"napari-medtrans") name the contrast, the method, the checkpoint's sha256 and the software, never the patient;
a ``series_description`` or ``method`` the caller passes is written as given. Pixel values carry no burned-in
text (BurnedInAnnotation ``NO``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, GeometryError, InvalidVolumeError
from ..volume import MODALITIES, Volume, patient_id_sha256
from .orientation import dicom_geometry_from_affine

__all__ = [
    "ExportResult",
    "export_dicom_series",
    "PATIENT_STUDY_KEYWORDS",
    "TYPE2_KEYWORDS",
    "DEIDENTIFICATION",
    "KEPT_UNDER_DEIDENTIFICATION",
    "derivation_description",
    "patient_id_sha256",
    "is_map",
]

#: Attributes copied from the source header: Patient, Patient Study, General Study, Frame of Reference modules
#: (and the character set they are encoded in). Nothing else is copied.
PATIENT_STUDY_KEYWORDS = (
    "SpecificCharacterSet",
    "TimezoneOffsetFromUTC",
    # Patient
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "OtherPatientIDsSequence", "OtherPatientNames", "EthnicGroup", "PatientComments",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "PatientBreedDescription",
    "PatientBreedCodeSequence", "BreedRegistrationSequence", "ResponsiblePerson", "ResponsiblePersonRole",
    "ResponsibleOrganization", "QualityControlSubject",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    # Patient Study
    "PatientAge", "PatientSize", "PatientWeight", "AdditionalPatientHistory", "PregnancyStatus",
    "PatientSexNeutered",
    # General Study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "ProcedureCodeSequence", "AdmittingDiagnosesDescription",
    # Frame of Reference
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # General Series attributes describing the patient (needed to read the geometry the same way; the side)
    "PatientPosition", "BodyPartExamined", "Laterality",
)

#: Type 2 attributes (present, possibly empty) of the modules this exporter writes, PS3.3 MR Image IOD: Patient
#: (C.7.1.1), General Study (C.7.2.1), General Series (C.7.3.1; PatientPosition is 2C and required for MR
#: Image Storage), Frame of Reference (C.7.4.1), General Equipment (C.7.5.1), General Image (C.7.6.1), Image
#: Plane (C.7.6.2), MR Image (C.8.3.1; RepetitionTime is 2C, required unless echo planar). Those the source may
#: lack are written empty; the others the exporter writes itself.
TYPE2_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "SeriesNumber", "PatientPosition",
    "PositionReferenceIndicator",
    "Manufacturer",
    "InstanceNumber",
    "SliceThickness",
    "ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength",
)

#: PS3.15 Table E.1-1 (Basic Application Level Confidentiality Profile): the attributes this exporter handles
#: and the action it takes under ``deidentify=True``. X removed, Z emptied (Type 2 in the IOD), D replaced by a
#: dummy value, U replaced by a UID mapped from it. Attributes marked X that the exporter never copies are listed
#: so that the list says what a de-identified file cannot hold.
DEIDENTIFICATION: dict[str, str] = {
    # Patient
    "PatientName": "D", "PatientID": "D", "PatientBirthDate": "Z", "PatientSex": "Z",
    "PatientBirthTime": "X", "PatientAge": "X", "PatientSize": "X", "PatientWeight": "X",
    "PatientAddress": "X", "PatientTelephoneNumbers": "X", "PatientMotherBirthName": "X", "PatientBirthName": "X",
    "OtherPatientIDs": "X", "OtherPatientNames": "X", "OtherPatientIDsSequence": "X", "IssuerOfPatientID": "X",
    "EthnicGroup": "X", "Occupation": "X", "PatientComments": "X", "AdditionalPatientHistory": "X",
    "PregnancyStatus": "X", "MedicalRecordLocator": "X", "MilitaryRank": "X", "BranchOfService": "X",
    "CountryOfResidence": "X", "RegionOfResidence": "X", "PatientReligiousPreference": "X",
    "MedicalAlerts": "X", "Allergies": "X", "SmokingStatus": "X", "PatientState": "X", "SpecialNeeds": "X",
    "ResponsiblePerson": "X", "ResponsibleOrganization": "X", "ReferencedPatientSequence": "X",
    # Study, visit and request
    "StudyInstanceUID": "U", "StudyDate": "Z", "StudyTime": "Z", "ReferringPhysicianName": "Z", "StudyID": "Z",
    "AccessionNumber": "Z", "IssuerOfAccessionNumberSequence": "X", "StudyDescription": "X",
    "PhysiciansOfRecord": "X", "NameOfPhysiciansReadingStudy": "X", "PerformingPhysicianName": "X",
    "RequestingPhysician": "X", "ProcedureCodeSequence": "X", "AdmittingDiagnosesDescription": "X",
    "AdmissionID": "X", "CurrentPatientLocation": "X", "RequestAttributesSequence": "X",
    "RequestedProcedureDescription": "X", "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X", "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X", "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    # Equipment and people of the source acquisition
    "InstitutionName": "X", "InstitutionAddress": "X", "InstitutionalDepartmentName": "X", "StationName": "X",
    "OperatorsName": "X", "DeviceSerialNumber": "X", "ProtocolName": "X",
    # Dates and times other than the study's: removed, not shifted
    "TimezoneOffsetFromUTC": "X", "SeriesDate": "X", "SeriesTime": "X", "AcquisitionDate": "X",
    "AcquisitionTime": "X", "AcquisitionDateTime": "X", "ContentDate": "X", "ContentTime": "X",
    "InstanceCreationDate": "X", "InstanceCreationTime": "X",
    # Frame of reference
    "FrameOfReferenceUID": "U", "PositionReferenceIndicator": "Z",
    # UIDs of this series and the images it references
    "SeriesInstanceUID": "U", "SOPInstanceUID": "U", "ReferencedSOPInstanceUID": "U",
}
#: Source attributes kept as they are under de-identification: they carry nothing identifying and the IOD or
#: the geometry needs them (not in Table E.1-1).
KEPT_UNDER_DEIDENTIFICATION = (
    "SpecificCharacterSet", "PatientPosition", "BodyPartExamined", "Laterality", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence", "QualityControlSubject",
    "PatientSexNeutered",
)
#: BodyPartExamined values (PS3.16 Annex L) of parts that are not paired: no Laterality is written for them.
_UNPAIRED_PARTS = frozenset({
    "HEAD", "BRAIN", "SKULL", "HEADNECK", "NECK", "FACE", "NOSE", "MOUTH", "JAW", "TONGUE", "LARYNX", "PHARYNX",
    "PITUITARY", "SPINE", "CSPINE", "TSPINE", "LSPINE", "SSPINE", "COCCYX", "SACRUM", "CTSPINE", "TLSPINE",
    "LSSPINE", "WHOLESPINE", "CHEST", "THORAX", "CHESTABDOMEN", "CHESTABDPELV", "ABDOMEN", "ABDOMENPELVIS",
    "PELVIS", "HEART", "AORTA", "THORACICAORTA", "ABDOMINALAORTA", "MEDIASTINUM", "ESOPHAGUS", "STOMACH",
    "LIVER", "PANCREAS", "SPLEEN", "GALLBLADDER", "BLADDER", "PROSTATE", "UTERUS", "RECTUM", "COLON",
    "SMALLINTESTINE", "DUODENUM", "STERNUM", "TRACHEA", "THYROID", "WHOLEBODY", "ENTIREBODY", "BODY",
})
_DUMMY = "ANONYMOUS"
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


def is_map(volume: Volume) -> bool:
    """True for an error, trust or spread map (provenance ``"map"``) or anything whose modality is no MR contrast."""
    prov = volume.provenance or {}
    return bool(prov.get("map")) or (volume.modality is not None and volume.modality not in MODALITIES)


def _map_name(volume: Volume) -> str:
    return str((volume.provenance or {}).get("map") or volume.modality or "map")


def derivation_description(
    volume: Volume, method: str | None = None, checkpoint_sha256: str | None = None, synthetic: bool = True
) -> str:
    """The DerivationDescription text (at most 1024 characters).

    For a synthetic volume: the method, the checkpoint's sha256, the input contrast(s) and the software; for
    a map the same, saying it is a map; for another volume (a re-export) only that it was re-encoded by this
    software.
    """
    from ... import __version__

    prov = volume.provenance or {}
    if is_map(volume):
        method = method or prov.get("method")
        by = f" of an image computed by {method}" if method else ""
        text = (f"{_map_name(volume)} map{by}, written by napari-medtrans {__version__} (16-bit rescaled). "
                "A map, not an MR image of the patient.")
        return text[:1024]
    if not synthetic:
        return f"{volume.modality or 'image'} re-exported by napari-medtrans {__version__} (16-bit rescaled)"
    method = method or prov.get("method") or "unknown method"
    sha = checkpoint_sha256 or prov.get("checkpoint_sha256") or "none (untrained or unknown model)"
    inputs = prov.get("input_modalities") or []
    src = f" from {'+'.join(str(m) for m in inputs)}" if inputs else ""
    run = _run_text(prov)
    text = (
        f"SYNTHETIC {volume.modality or 'image'} computed{src} by {method}; checkpoint sha256 {sha}{run}; "
        f"napari-medtrans {__version__}. Not an acquired image."
    )
    return text[:1024]


def _run_text(prov: Mapping[str, Any]) -> str:
    """How the run went, from the provenance: checkpoint file name, steps, seed, samples, precision, and any
    modality override. Nothing identifying (no input paths or UIDs: they may name the patient, and de-identified
    exports replace UIDs)."""

    def clean(value: Any) -> str:
        return "".join(ch for ch in " ".join(str(value).split()) if ch.isprintable() and ch != "\\")[:64]

    parts = []
    if prov.get("checkpoint_name"):
        parts.append(f"checkpoint file {clean(prov['checkpoint_name'])}")
    for key in ("steps", "seed", "samples", "precision"):
        if prov.get(key) is not None:
            parts.append(f"{key} {clean(prov[key])}")
    for record in prov.get("modality_override") or []:
        if isinstance(record, Mapping):
            parts.append(f"input {clean(record.get('input'))} overridden (labelled {clean(record.get('labelled'))})")
    return ("; " + ", ".join(parts)) if parts else ""


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
    allow_non_synthetic: bool = False,
    allow_maps: bool = False,
    allow_other_study: bool = False,
) -> ExportResult:
    """Write ``volume`` as a new derived MR series of its source study (see the module notes).

    Parameters
    ----------
    volume : Volume
        What to export: a synthetic MR image (see "What may be exported"). Its affine gives the geometry of
        every slice (slices along k).
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
        None (default): as ``volume.synthetic`` says. True: mark a volume that is not flagged synthetic (made by
        another tool) as synthetic. False: refused for a volume flagged synthetic (never exported unmarked).
    allow_non_synthetic : bool
        Re-export a volume that is not synthetic (an acquired scan), unmarked. Refused otherwise.
    allow_maps : bool
        Export an error, trust or spread map (provenance "map", or a modality that is no MR contrast) as a
        derived series that says it is a map. Refused otherwise.
    allow_other_study : bool
        Export into a source study of another patient or another study than the one the volume was made from
        (provenance "input_patient_sha256" / "input_study_uid"). Refused otherwise.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportError
        The volume is not a synthetic MR image, the source study is another patient's or another study, the
        output folder is not empty or is a file.
    InvalidVolumeError
        No voxels, or NaN or infinite voxels.
    GeometryError
        An affine DICOM cannot express (skewed in-plane axes).
    DicomReadError, MultipleSeriesError, NoDicomError, GeometryError
        The source cannot be read or fails the reader's checks, or holds several series and
        ``source_series_uid`` is not given.
    """
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from .dicom_write import _OutputFiles, _save, _to_stored

    if not isinstance(volume, Volume):
        raise TypeError(f'Argument "volume" must be a Volume, got {type(volume).__name__}.')
    data = np.asarray(volume.data)
    if data.size == 0:
        raise InvalidVolumeError(f"cannot export: the volume has no voxels (shape {tuple(data.shape)})", volume.path)
    if not np.all(np.isfinite(data)):
        raise InvalidVolumeError("cannot export: the volume holds NaN or infinite voxels", volume.path)
    is_synthetic = _check_what_it_is(volume, out_dir, synthetic, allow_non_synthetic, allow_maps)
    out = _check_out_dir(out_dir)
    nx, ny, nz = data.shape
    try:
        geom = dicom_geometry_from_affine(volume.affine, nz)
    except ValueError as exc:
        raise GeometryError(f"cannot export to DICOM: {exc}", volume.path) from exc
    headers, where = _source_headers(volume, source, source_series_uid)
    if headers and not allow_other_study:
        _check_same_patient_and_study(volume, headers[0], where)
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
    _fill_type2(ds)

    with _OutputFiles(out) as written:
        for k in range(nz):
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [_ds(v) for v in geom["positions"][k]]
            ds.SliceLocation = _ds(geom["slice_locations"][k])
            if frames:
                ds.SourceImageSequence = _reference_items([frames[i] for i in refs[k]], mapped)
            path = written.add(out / f"IM{k + 1:05d}.dcm")
            _save(ds, path, ExplicitVRLittleEndian, stack[k])
    return ExportResult(
        files=list(written.files),
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frame_of_reference_uid=for_uid,
        new_study=not headers,
        deidentified=bool(deidentify),
        n_referenced=len({i for r in refs for i in r}),
        geometry_matches_source=bool(headers) and matches,
    )


# -- what may be exported ---------------------------------------------------------------------------------


def _check_what_it_is(volume: Volume, out_dir, synthetic, allow_non_synthetic: bool, allow_maps: bool) -> bool:
    """Refuse maps and acquired volumes unless allowed; return whether the series is marked synthetic."""
    where = volume.path or out_dir
    partial = (volume.provenance or {}).get("partial")
    if partial:
        done = partial.get("slices_done") if isinstance(partial, dict) else None
        total = partial.get("slices_total") if isinstance(partial, dict) else None
        raise ExportError(
            "the volume is a partial translation (cancelled after "
            + (f"{done} of {total} slices" if done is not None else "some slices")
            + "); its unfinished slices are blank, so it is not exported. Translate it again to the end",
            where, refused="partial", option=None)
    if synthetic is False and volume.synthetic:
        raise ExportError(
            f"the volume is marked synthetic ({volume.modality or 'image'}); synthetic data is never exported "
            "unmarked, so synthetic=False cannot apply to it", where, refused="unmark", option=None)
    if is_map(volume) and not allow_maps:
        if (volume.provenance or {}).get("map"):
            what = f"the volume is a {_map_name(volume)} map, not an MR image"
        else:
            what = (f"the volume's modality {volume.modality!r} is none of the MR contrasts "
                    f"{', '.join(MODALITIES)}: it is taken for a map, not an MR image")
        raise ExportError(
            f"{what}; written as an MR series it would sit among the patient's images like a scan. Save it as "
            "NIfTI, or pass allow_maps=True to write it as a derived series that says it is a map",
            where, refused="map", option="allow_maps")
    marked = bool(volume.synthetic or synthetic)
    if not marked and not is_map(volume) and not allow_non_synthetic:
        raise ExportError(
            f"the volume is not marked synthetic (an acquired {volume.modality or 'image'}?); export writes "
            "synthetic images. Pass allow_non_synthetic=True to re-export it unmarked, or synthetic=True if it "
            "is a synthetic image made by another tool", where, refused="acquired", option="allow_non_synthetic")
    return marked


def _check_same_patient_and_study(volume: Volume, first, where) -> None:
    """Refuse a source whose patient or study differs from the one the volume was made from."""
    prov = volume.provenance or {}
    want_patient = str(prov.get("input_patient_sha256") or "").strip().lower()
    source_id = first.get("PatientID")
    source_id = "" if source_id is None else str(source_id)
    if want_patient and source_id.strip():
        have = {patient_id_sha256(source_id), patient_id_sha256(source_id.strip())}
        if want_patient not in have:
            raise ExportError(
                f"the source series belongs to patient {source_id!r} (PatientID sha256 "
                f"{patient_id_sha256(source_id)[:12]}...), but the volume was made from the images of another "
                f"patient (PatientID sha256 {want_patient[:12]}...); a synthetic image must not join another "
                "patient's study. Choose the source it was made from, or pass allow_other_study=True",
                where, refused="patient", option="allow_other_study")
    want_study = str(prov.get("input_study_uid") or "").strip()
    source_study = str(first.get("StudyInstanceUID", "") or "").strip()
    if want_study and source_study and want_study != source_study:
        raise ExportError(
            f"the source series is in study {source_study}, but the volume was made from study {want_study}: "
            "exporting it there would put it in another study (another visit, or another patient). Choose the "
            "source it was made from, or pass allow_other_study=True",
            where, refused="study", option="allow_other_study")


# -- output folder ----------------------------------------------------------------------------------------


def _check_out_dir(out_dir) -> Path:
    """The output folder, which must be new or empty (nothing is created here)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError("is a file; DICOM export needs a folder", out)
    if out.is_dir() and any(out.iterdir()):
        raise ExportError("folder is not empty; export a series into a new or empty folder so that no two "
                          "series are mixed", out)
    return out


# -- source -----------------------------------------------------------------------------------------------


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
            if deidentify and DEIDENTIFICATION.get(kw, "K" if kw in KEPT_UNDER_DEIDENTIFICATION else "X") == "X":
                continue  # under de-identification only what the profile keeps, empties or replaces is copied
            elem = copy.deepcopy(src[kw])
            ds[elem.tag] = elem
    if patient_name is not None:
        ds.PatientName = str(patient_name)
    if patient_id is not None:
        ds.PatientID = str(patient_id)
    if src is None and not deidentify:
        now = _dt.datetime.now()
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    if deidentify:
        given = {"PatientName": patient_name, "PatientID": patient_id}
        for kw, action in DEIDENTIFICATION.items():
            if action == "D" and given.get(kw) is None:
                setattr(ds, kw, _DUMMY)
            elif action == "Z":
                setattr(ds, kw, "")
            elif action == "U" and kw in ds and str(ds.get(kw) or ""):
                setattr(ds, kw, mapped(str(ds.get(kw))))
            elif action == "X" and kw in ds:
                del ds[kw]
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "napari-medtrans: PS3.15 E.1.1 Basic Profile, UIDs remapped"  # LO: 64 max
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = DicomSequence([code])
    return ds


def _fill_type2(ds) -> None:
    """Write the Type 2 (and required Type 2C) attributes the source lacked, empty (module notes)."""
    from pydicom.sequence import Sequence as DicomSequence

    for kw in TYPE2_KEYWORDS:
        if kw not in ds:
            setattr(ds, kw, None)
    if "Laterality" not in ds and _laterality_may_apply(ds.get("BodyPartExamined")):
        ds.Laterality = ""  # Type 2C: the part may be paired and which side is not known
    if "PatientSpeciesDescription" in ds or "PatientSpeciesCodeSequence" in ds:  # an animal: 2C of Patient and
        for kw in ("PatientBreedDescription", "ResponsiblePerson", "ResponsibleOrganization",  # Patient Study
                   "PatientSexNeutered"):
            if kw not in ds:
                setattr(ds, kw, "")
        for kw in ("PatientBreedCodeSequence", "BreedRegistrationSequence"):
            if kw not in ds:
                setattr(ds, kw, DicomSequence([]))


def _laterality_may_apply(body_part) -> bool:
    """Whether Laterality (Type 2C) is needed: the examined part is unknown or may be a paired one."""
    text = str(body_part or "").strip().upper().replace(" ", "")
    return text not in _UNPAIRED_PARTS


def _series_description(volume: Volume, given: str | None, method: str | None, synthetic: bool) -> str:
    method = method or (volume.provenance or {}).get("method")
    what = f"{_map_name(volume)} map" if is_map(volume) else f"{volume.modality or 'image'}"
    text = given or (what + (f" by {method}" if method else ""))
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
    if is_map(volume):
        ds.ImageComments = (f"{'SYNTHETIC ' if synthetic else ''}{_map_name(volume)} map computed by "
                            "napari-medtrans; not an MR image of the patient")[:10240]
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
    lo, hi = float(np.percentile(data, 1)), float(np.percentile(data, 99))
    ds.WindowCenter = _ds((lo + hi) / 2)
    ds.WindowWidth = _ds(max(hi - lo, 1.0))  # PS3.3 C.11.2.1.2: the width is at least 1 (linear VOI function)


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
