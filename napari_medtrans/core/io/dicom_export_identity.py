"""Who and what study an exported DICOM series belongs to: the patient, study and frame-of-reference attributes
taken from the source header, their de-identification, and the Type 2 attributes written empty.

The keyword tables say what the exporter copies (:data:`PATIENT_STUDY_KEYWORDS`), what it always writes
(:data:`TYPE2_KEYWORDS`) and what it does under ``deidentify=True`` (:data:`DEIDENTIFICATION`, the PS3.15
Annex E Basic Application Level Confidentiality Profile, and :data:`KEPT_UNDER_DEIDENTIFICATION`); see
:mod:`napari_medtrans.core.io.dicom_export` for the rules in words. The functions build the identity part of
every file's dataset, map UIDs under de-identification, and make new study and frame-of-reference UIDs when the
source has none.
"""

from __future__ import annotations

import copy
import datetime as _dt


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



def _hashed_uid(salt: str, uid: str) -> str:
    """A ``2.25.`` UID (UUID as an integer, ISO/IEC 9834-8) derived from ``salt`` and ``uid`` by sha256."""
    import hashlib

    digest = bytearray(hashlib.sha256(f"{salt}\x00{uid}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8 (custom) UUID
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return f"2.25.{int.from_bytes(bytes(digest), 'big')}"



def _uid_mapper(deidentify: bool, uid_salt: str | None):
    """The UID mapping of an export: UIDs replaced by salted ``2.25.`` UIDs under de-identification, else kept.

    The salt is random unless ``uid_salt`` is given (so that the same salt maps a study to the same UID).
    """
    from pydicom.uid import generate_uid

    salt = uid_salt if uid_salt is not None else generate_uid()

    def mapped(uid: str) -> str:
        return _hashed_uid(str(salt), str(uid)) if deidentify else str(uid)

    return mapped


def _study_and_frame_uids(ds) -> tuple[str, str]:
    """The dataset's StudyInstanceUID and FrameOfReferenceUID, new ones written where the source had none."""
    from pydicom.uid import generate_uid

    study_uid = str(ds.StudyInstanceUID) if "StudyInstanceUID" in ds else ""
    if not study_uid:
        study_uid = str(generate_uid())
        ds.StudyInstanceUID = study_uid
    for_uid = str(ds.get("FrameOfReferenceUID", "") or "")
    if not for_uid:
        for_uid = str(generate_uid())
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
    return study_uid, for_uid
