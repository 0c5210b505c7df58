"""What every dataset of the plain DICOM writer holds, single-frame slice or Enhanced MR file alike.

* :data:`MR_DEFAULTS` and :func:`_mr_parameters`: the acquisition parameters written for each contrast.
* :class:`_Context`: the values shared by every slice of one series (UIDs, geometry, rescale, names).
* :func:`_patient_study_header`: the new patient, study and frame of reference made from the arguments, a
  source-like header (what the exporter copies from its source); :func:`_common` adds the series and equipment
  attributes (:func:`_series_and_equipment`).
* :func:`_image_pixel`, :func:`_voi_window`, :func:`_ds_str`: the image pixel attributes, the VOI window and
  decimal strings, shared with the exporter.
"""

from __future__ import annotations

#: Acquisition parameters written for each contrast unless ``volume.provenance["mr_parameters"]`` overrides
#: them (times in ms, field strength in T). Plausible 3 T spin-echo / inversion-recovery values.
MR_DEFAULTS: dict[str | None, dict] = {
    "T1": {"ScanningSequence": "SE", "RepetitionTime": 500.0, "EchoTime": 15.0},
    "T1c": {"ScanningSequence": "SE", "RepetitionTime": 500.0, "EchoTime": 15.0},
    "T2": {"ScanningSequence": "SE", "RepetitionTime": 4000.0, "EchoTime": 100.0},
    "PD": {"ScanningSequence": "SE", "RepetitionTime": 3000.0, "EchoTime": 15.0},
    "FLAIR": {
        "ScanningSequence": ["SE", "IR"],
        "RepetitionTime": 9000.0,
        "EchoTime": 120.0,
        "InversionTime": 2500.0,
    },
    None: {"ScanningSequence": "SE", "RepetitionTime": 500.0, "EchoTime": 15.0},
}
_MR_KEYS = (
    "ScanningSequence",
    "SequenceVariant",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "MagneticFieldStrength",
    "SequenceName",
)


class _Context:
    """Values shared by every slice of one series."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _ds_str(value: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _mr_parameters(ctx) -> dict:
    from ..volume import normalise_modality

    params = dict(MR_DEFAULTS.get(normalise_modality(ctx.label), MR_DEFAULTS[None]))
    params.setdefault("SequenceVariant", "NONE")
    params.setdefault("MagneticFieldStrength", 3.0)
    params.setdefault("FlipAngle", 90.0)
    extra = ctx.volume.provenance.get("mr_parameters") or {}
    params.update({k: v for k, v in dict(extra).items() if k in _MR_KEYS})
    return params


def _patient_study_header(ctx):
    """The source-like header of a new patient and study made from the writer's arguments: the Patient, General
    Study and Frame of Reference attributes (and the patient's position) that the exporter copies from a source
    header (``PATIENT_STUDY_KEYWORDS`` of :mod:`.dicom_export_identity`)."""
    from pydicom.dataset import Dataset

    date, time = ctx.now.strftime("%Y%m%d"), ctx.now.strftime("%H%M%S")
    ds = Dataset()
    ds.PatientName = ctx.patient_name
    ds.PatientID = ctx.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = ctx.study_uid
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "HEAD"
    ds.FrameOfReferenceUID = ctx.for_uid
    ds.PositionReferenceIndicator = ""
    return ds


def _common(ds, ctx) -> None:
    """Patient, study, series, frame of reference, equipment and SOP common attributes."""
    ds.update(_patient_study_header(ctx))
    _series_and_equipment(ds, ctx)


def _series_and_equipment(ds, ctx) -> None:
    """SOP common, series, equipment and content attributes of the plain writer (not the patient and study)."""
    date, time = ctx.now.strftime("%Y%m%d"), ctx.now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.Modality = "MR"
    ds.SeriesInstanceUID = ctx.series_uid
    ds.SeriesNumber = ctx.series_number
    ds.SeriesDescription = ctx.series_description[:64]
    ds.SeriesDate, ds.SeriesTime = date, time
    if ctx.label:
        ds.ProtocolName = str(ctx.label)[:64]
    ds.Manufacturer = "napari-medtrans"
    ds.ManufacturerModelName = "phantom writer"
    ds.SoftwareVersions = _version()
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionNumber = 1
    if ctx.synthetic:
        # Written only when YES: dicom3tools releases before 2023 do not know the tag and flag it.
        ds.SyntheticData = "YES"
    if ctx.label and str(ctx.label) == "T1c":
        ds.ContrastBolusAgent = "Gadolinium"
        ds.ContrastBolusRoute = "IV"


def _image_pixel(ds, rows: int, cols: int, signed: bool) -> None:
    """Image Pixel attributes of 16-bit monochrome images (every writer: single-frame, Enhanced MR, export)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0


def _voi_window(ds, lo: float, hi: float) -> None:
    """WindowCenter/WindowWidth spanning ``lo``..``hi``; the width at least 1 (PS3.3 C.11.2.1.2)."""
    ds.WindowCenter = _ds_str((lo + hi) / 2)
    ds.WindowWidth = _ds_str(max(hi - lo, 1.0))


def _version() -> str:
    try:
        from ... import __version__

        return f"napari-medtrans {__version__}"
    except ImportError:  # pragma: no cover - package metadata missing in a source checkout
        return "napari-medtrans"
