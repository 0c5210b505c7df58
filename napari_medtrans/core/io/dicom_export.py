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

Where the code lives
--------------------
This module holds :func:`export_dicom_series`, :class:`ExportResult` and re-exports the names of the modules
beside it: the checks of what is exported and where (:mod:`.dicom_export_checks`), the source headers, frames
and references (:mod:`.dicom_export_source`), the patient, study and de-identification attributes
(:mod:`.dicom_export_identity`), and the series and image attributes (:mod:`.dicom_export_image`). The
per-slice datasets are built and the files written by the single-frame writer of :mod:`.dicom_write`
(``_slice_template``: the header's patient and study, plane geometry, pixels with rescale, window;
``_write_slices``: per-slice UID, number and position, atomic writing), which ``write_dicom_series`` uses too,
with a header made from its arguments.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, GeometryError, InvalidVolumeError  # noqa: F401 - re-exported
from ..volume import MODALITIES, Volume, patient_id_sha256  # noqa: F401 - re-exported
from .dicom_export_checks import (  # noqa: F401 - re-exported: they were defined here
    _check_out_dir,
    _check_same_patient_and_study,
    _check_what_it_is,
    _checked_voxels,
    _export_geometry,
    _map_name,
    is_map,
)
from .dicom_export_identity import (  # noqa: F401 - re-exported: they were defined here
    _DUMMY,
    _UNPAIRED_PARTS,
    DEIDENTIFICATION,
    KEPT_UNDER_DEIDENTIFICATION,
    PATIENT_STUDY_KEYWORDS,
    TYPE2_KEYWORDS,
    _base_dataset,
    _fill_type2,
    _hashed_uid,
    _laterality_may_apply,
    _study_and_frame_uids,
    _uid_mapper,
)
from .dicom_export_image import (  # noqa: F401 - re-exported: they were defined here
    _ds,
    _int_or_none,
    _run_text,
    _series_and_image,
    _series_description,
    _series_number,
    derivation_description,
)
from .dicom_export_source import (  # noqa: F401 - re-exported: they were defined here
    _MR_IMAGE_STORAGE,
    _half_slab,
    _read_source,
    _reference_items,
    _references,
    _source_frames,
    _source_headers,
    _SourceFrame,
)
from .dicom_write import _slice_template, _to_stored, _write_slices
from .orientation import dicom_geometry_from_affine  # noqa: F401 - re-exported

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

    # What is exported, and where: all checked before anything is made.
    data = _checked_voxels(volume)
    is_synthetic = _check_what_it_is(volume, out_dir, synthetic, allow_non_synthetic, allow_maps)
    out = _check_out_dir(out_dir)
    nx, ny, nz = data.shape
    geom = _export_geometry(volume, nz)
    headers, where = _source_headers(volume, source, source_series_uid)
    if headers and not allow_other_study:
        _check_same_patient_and_study(volume, headers[0], where)
    mapped = _uid_mapper(deidentify, uid_salt)
    # The source slices each exported slice references, and the stored pixels.
    frames = _source_frames(headers)
    refs, matches = _references(frames, geom, (nx, ny), _half_slab(frames))
    stored, slope, intercept, signed = _to_stored(data, True, volume.path)
    # The patient and study (copied, de-identified or new) as a header, fed to the writer's series builder;
    # then the series and image attributes, and the Type 2 attributes left empty.
    header = _base_dataset(headers[0] if headers else None, deidentify, patient_name, patient_id, mapped)
    study_uid, for_uid = _study_and_frame_uids(header)
    ds = _slice_template(header, geom, ny, nx, slope=slope, intercept=intercept, signed=signed,
                         window=(float(np.percentile(data, 1)), float(np.percentile(data, 99))))
    series_uid = str(generate_uid())
    _series_and_image(ds, volume, series_uid, _series_number(headers, series_number),
                      _series_description(volume, series_description, method, is_synthetic), is_synthetic,
                      None if deidentify else _dt.datetime.now(),
                      derivation_description(volume, method, checkpoint_sha256, is_synthetic))
    _fill_type2(ds)

    def references(ds, k: int) -> None:  # the source frames each slice passes through (module notes)
        ds.SourceImageSequence = _reference_items([frames[i] for i in refs[k]], mapped)

    files = _write_slices(out, ds, geom, stored, lambda k: f"IM{k + 1:05d}.dcm", ExplicitVRLittleEndian,
                          references if frames else None)
    return ExportResult(
        files=files,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frame_of_reference_uid=for_uid,
        new_study=not headers,
        deidentified=bool(deidentify),
        n_referenced=len({i for r in refs for i in r}),
        geometry_matches_source=bool(headers) and matches,
    )
