"""DICOM export of synthetic volumes: study membership, synthetic marking, geometry, references, de-identification.

External checks: dciodvfy (no errors; the 2022 dicom3tools does not know SyntheticData (0008,001C) and reports
exactly that tag as an unknown attribute, which is ignored) and dcm2niix (the same geometry and values back).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_medtrans.core.errors import DicomReadError, ExportError, InvalidVolumeError, MultipleSeriesError
from napari_medtrans.core.io import load, read_nifti, write_nifti
from napari_medtrans.core.io.dicom_export import export_dicom_series
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.core.volume import Volume

SHA = "0123456789abcdef" * 4
PATIENT = dict(patient_name="DOE^JANE", patient_id="PID-4711")


@pytest.fixture(autouse=True)
def strict_pydicom(monkeypatch):
    """Values that break their VR (too long, wrong characters) raise while writing instead of passing silently."""
    from pydicom import config

    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)


def make_volume(shape=(24, 20, 8), spacing=(1.1, 1.3, 3.0), direction=None, offset=(-12.0, 20.0, -30.0)):
    aff = np.eye(4)
    aff[:3, :3] = (np.eye(3) if direction is None else direction) @ np.diag(spacing)
    aff[:3, 3] = offset
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    data = 3 * i + 0.7 * j**1.5 + 40 * k + 5 * np.sin(i * j / 7)
    return Volume(data.astype(np.float32), aff, modality="T1")


def oblique() -> np.ndarray:
    a, b = np.deg2rad([20.0, -15.0])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def dicom_source(tmp_path, volume=None, name="src", **kw):
    """A T1 DICOM series on disk and the Volume read back from it (with its headers)."""
    volume = make_volume() if volume is None else volume
    write_dicom_series(volume, tmp_path / name, series_description="T1 AX", **PATIENT, **kw)
    return load(tmp_path / name)


def synthetic_from(source: Volume) -> Volume:
    data = 1000.0 - source.data * 0.37 + 0.25  # float, not integer: stored with a rescale slope
    return source.derive(data, modality="T2", synthetic=True,
                         provenance={"method": "edts-trans", "checkpoint_sha256": SHA, "input_modalities": ["T1"]})


def dciodvfy_errors(path) -> list[str]:
    proc = subprocess.run(["dciodvfy", os.fspath(path)], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
    return [ln for ln in lines if "(0x0008,0x001c)" not in ln]


def test_series_joins_source_study_marked_synthetic_with_references(tmp_path):
    src = dicom_source(tmp_path)
    syn = synthetic_from(src)
    result = export_dicom_series(syn, tmp_path / "out")

    assert [p.name for p in result.files] == [f"IM{k:05d}.dcm" for k in range(1, 9)]
    assert not result.new_study and result.geometry_matches_source and result.n_referenced == 8
    headers = [pydicom.dcmread(p) for p in result.files]
    source_headers = src.source.dicom_datasets
    for k, ds in enumerate(headers):
        assert ds.StudyInstanceUID == src.source.study_instance_uid == result.study_instance_uid
        assert ds.SeriesInstanceUID == result.series_instance_uid != src.source.series_instance_uid
        assert ds.FrameOfReferenceUID == source_headers[0].FrameOfReferenceUID
        assert (str(ds.PatientName), ds.PatientID) == ("DOE^JANE", "PID-4711")
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.SyntheticData == "YES"
        assert ds.SeriesDescription.startswith("SYNTHETIC") and "T2" in ds.SeriesDescription
        assert "edts-trans" in ds.DerivationDescription and SHA in ds.DerivationDescription
        # the slice at the same position in the source is the one referenced
        (ref,) = ds.SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == source_headers[k].SOPInstanceUID
        assert ref.ReferencedSOPClassUID == source_headers[k].SOPClassUID
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"

    back = load(tmp_path / "out")
    assert back.synthetic
    np.testing.assert_allclose(back.affine, syn.affine, atol=1e-4)
    np.testing.assert_allclose(back.data, syn.data, atol=2e-5 * np.abs(syn.data).max())


@pytest.mark.external
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not on PATH")
@pytest.mark.parametrize("deidentify", [False, True])
def test_export_passes_dciodvfy(tmp_path, deidentify):
    syn = synthetic_from(dicom_source(tmp_path, make_volume(direction=oblique())))
    result = export_dicom_series(syn, tmp_path / "out", deidentify=deidentify)
    for path in (result.files[0], result.files[-1]):
        assert dciodvfy_errors(path) == []


@pytest.mark.external
@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix is not on PATH")
@pytest.mark.parametrize("direction", [None, "oblique"])
def test_dcm2niix_reads_back_the_same_geometry(tmp_path, direction):
    syn = synthetic_from(dicom_source(tmp_path, make_volume(direction=oblique() if direction else None)))
    export_dicom_series(syn, tmp_path / "out")
    (tmp_path / "nii").mkdir()
    proc = subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "conv", "-o", str(tmp_path / "nii"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    outputs = sorted((tmp_path / "nii").glob("*.nii"))
    assert proc.returncode == 0 and len(outputs) == 1, proc.stdout + proc.stderr
    theirs = nib.load(str(outputs[0]))
    ours_c = nib.as_closest_canonical(nib.Nifti1Image(syn.data, syn.affine))
    theirs_c = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(theirs.dataobj, dtype=np.float64)
                                                        .reshape(theirs.shape[:3]), theirs.affine))
    np.testing.assert_allclose(theirs_c.affine, ours_c.affine, atol=1e-3)
    np.testing.assert_allclose(np.asarray(theirs_c.dataobj), np.asarray(ours_c.dataobj),
                               atol=2e-5 * np.abs(syn.data).max() + 1e-3)


def test_deidentify_removes_identifiers_and_remaps_uids(tmp_path):
    src = dicom_source(tmp_path)
    syn = synthetic_from(src)
    a = export_dicom_series(syn, tmp_path / "a", deidentify=True, uid_salt="project-7")
    b = export_dicom_series(syn, tmp_path / "b", deidentify=True, uid_salt="project-7")
    c = export_dicom_series(syn, tmp_path / "c", deidentify=True)
    source_uids = {str(ds.SOPInstanceUID) for ds in src.source.dicom_datasets}
    source_uids |= {src.source.study_instance_uid, str(src.source.dicom_datasets[0].FrameOfReferenceUID)}
    for path in a.files:
        raw = path.read_bytes()
        for secret in (b"DOE", b"JANE", b"PID-4711"):
            assert secret not in raw
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == "ANONYMOUS" and ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.StudyDate == "" and "SeriesDate" not in ds and "ContentDate" not in ds
        used = {ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID}
        used |= {r.ReferencedSOPInstanceUID for r in ds.SourceImageSequence}
        assert not used & source_uids
        assert ds.SyntheticData == "YES"  # still unmistakably synthetic
    assert a.study_instance_uid == b.study_instance_uid != c.study_instance_uid
    assert a.deidentified


def test_nifti_source_makes_a_new_study(tmp_path):
    path = write_nifti(make_volume(), tmp_path / "t1.nii.gz")
    src = read_nifti(path)
    result = export_dicom_series(synthetic_from(src), tmp_path / "out", patient_id="STUDY-SUBJ-01")
    ds = pydicom.dcmread(result.files[0])
    assert result.new_study and not result.geometry_matches_source and result.n_referenced == 0
    assert ds.PatientID == "STUDY-SUBJ-01" and "SourceImageSequence" not in ds
    assert ds.SyntheticData == "YES"
    np.testing.assert_allclose(load(tmp_path / "out").affine, src.affine, atol=1e-4)


def test_source_folder_for_a_volume_read_from_nifti(tmp_path):
    src = dicom_source(tmp_path)
    nifti = read_nifti(write_nifti(src, tmp_path / "t1.nii.gz"))
    result = export_dicom_series(synthetic_from(nifti), tmp_path / "out", source=tmp_path / "src")
    ds = pydicom.dcmread(result.files[2])
    assert ds.StudyInstanceUID == src.source.study_instance_uid and result.geometry_matches_source
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.source.dicom_datasets[2].SOPInstanceUID

    far = nifti.derive(nifti.data)
    far.affine[:3, 3] += (0.0, 0.0, 500.0)  # half a metre above the source: nothing overlaps
    away = export_dicom_series(far, tmp_path / "far", source=src, synthetic=True)
    assert not away.geometry_matches_source and away.n_referenced == 1  # the nearest (top) source slice


def test_reformatted_volume_references_every_source_slice_it_crosses(tmp_path):
    src = dicom_source(tmp_path)
    sagittal = Volume(src.data.transpose(2, 1, 0).copy(), src.affine[:, [2, 1, 0, 3]], modality="T2",
                      synthetic=True)  # slices along the source's i axis: each crosses all 8 axial slices
    result = export_dicom_series(sagittal, tmp_path / "out", source=src)
    ds = pydicom.dcmread(result.files[5])
    assert len(ds.SourceImageSequence) == 8 and result.geometry_matches_source


def test_enhanced_source_references_frames(tmp_path):
    src = dicom_source(tmp_path, enhanced=True)
    result = export_dicom_series(synthetic_from(src), tmp_path / "out")
    refs = [pydicom.dcmread(p).SourceImageSequence[0] for p in result.files]
    assert [int(r.ReferencedFrameNumber) for r in refs] == list(range(1, 9))
    assert len({r.ReferencedSOPInstanceUID for r in refs}) == 1


def test_refuses_bad_output_and_ambiguous_sources(tmp_path):
    src = dicom_source(tmp_path)
    syn = synthetic_from(src)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "old.dcm").write_bytes(b"x")
    with pytest.raises(ExportError, match="busy: folder is not empty"):
        export_dicom_series(syn, tmp_path / "busy")
    bad = syn.derive(np.where(syn.data > syn.data.mean(), np.nan, syn.data))
    with pytest.raises(InvalidVolumeError, match="NaN"):
        export_dicom_series(bad, tmp_path / "nan")
    write_dicom_series(make_volume(), tmp_path / "two", series_description="A", **PATIENT)
    write_dicom_series(make_volume(), tmp_path / "two", series_description="B", series_number=2, **PATIENT)
    with pytest.raises(MultipleSeriesError, match="2 DICOM series"):
        export_dicom_series(syn, tmp_path / "x", source=tmp_path / "two")
    uid = pydicom.dcmread(next((tmp_path / "two").glob("S002_*.dcm"))).SeriesInstanceUID
    result = export_dicom_series(syn, tmp_path / "y", source=tmp_path / "two", source_series_uid=uid)
    assert result.n_referenced == 8


def test_acquired_volume_is_re_exported_without_synthetic_marks_when_asked(tmp_path):
    src = dicom_source(tmp_path)
    result = export_dicom_series(src, tmp_path / "out", allow_non_synthetic=True)
    ds = pydicom.dcmread(result.files[0])
    assert "SyntheticData" not in ds and not ds.SeriesDescription.startswith("SYNTHETIC")
    assert "re-exported" in ds.DerivationDescription and list(ds.ImageType)[0] == "DERIVED"
    assert not load(tmp_path / "out").synthetic


# -- what may be exported (issue 18, item 3) ---------------------------------------------------------------


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_acquired_volume_is_refused_unless_asked(tmp_path):
    src = dicom_source(tmp_path)
    with pytest.raises(ExportError, match="not marked synthetic") as info:
        export_dicom_series(src, tmp_path / "out")
    assert "allow_non_synthetic" in str(info.value) and str(tmp_path / "src") in str(info.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="never exported unmarked"):
        export_dicom_series(synthetic_from(src), tmp_path / "out", synthetic=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["provenance", "modality"])
def test_error_and_trust_maps_are_refused_unless_asked(tmp_path, kind):
    src = dicom_source(tmp_path)
    syn = synthetic_from(src)
    if kind == "provenance":  # as the engine makes them: provenance "map"
        error = syn.derive(np.abs(syn.data - 500.0), modality="abs error", provenance={"map": "abs error"})
    else:  # a layer that lost its provenance but whose modality is no MR contrast
        error = Volume(np.abs(syn.data - 500.0), syn.affine, modality="tsm", source=syn.source, synthetic=True)
    with pytest.raises(ExportError, match="map, not an MR image") as info:
        export_dicom_series(error, tmp_path / "out")
    assert "allow_maps" in str(info.value)
    if kind == "modality":
        assert "'tsm' is none of the MR contrasts T1, T1c, T2, FLAIR, PD" in str(info.value)
    with pytest.raises(ExportError, match="map, not an MR image"):  # forcing the synthetic mark is no way round
        export_dicom_series(error, tmp_path / "out", synthetic=True, allow_non_synthetic=True)
    assert not (tmp_path / "out").exists()
    result = export_dicom_series(error, tmp_path / "out", allow_maps=True)
    ds = pydicom.dcmread(result.files[0])
    assert "map" in ds.SeriesDescription and "map" in ds.DerivationDescription.lower()
    assert ds.SyntheticData == "YES" and ds.SeriesDescription.startswith("SYNTHETIC")


def test_synthetic_of_another_patient_is_refused_naming_both(tmp_path):
    a = dicom_source(tmp_path, name="a")  # PatientID PID-4711
    write_dicom_series(make_volume(), tmp_path / "b", series_description="T1 AX", patient_name="ROE^RICHARD",
                       patient_id="PID-0815")
    syn = synthetic_from(a)
    syn.provenance.update(input_patient_sha256=_sha("PID-4711"), input_study_uid=a.source.study_instance_uid,
                          input_series_uids=[a.source.series_instance_uid])
    with pytest.raises(ExportError, match="another patient") as info:
        export_dicom_series(syn, tmp_path / "out", source=tmp_path / "b")
    msg = str(info.value)
    assert str(tmp_path / "b") in msg and "PID-0815" in msg and _sha("PID-4711")[:12] in msg
    assert "allow_other_study" in msg and not (tmp_path / "out").exists()
    # the same patient, another study: refused too, naming both studies
    write_dicom_series(make_volume(), tmp_path / "c", series_description="T1 AX", **PATIENT)
    other = load(tmp_path / "c")
    with pytest.raises(ExportError, match="another study") as info:
        export_dicom_series(syn, tmp_path / "out", source=other)
    assert other.source.study_instance_uid in str(info.value) and a.source.study_instance_uid in str(info.value)
    # asked for: exported into the other study
    result = export_dicom_series(syn, tmp_path / "out", source=tmp_path / "b", allow_other_study=True)
    assert pydicom.dcmread(result.files[0]).PatientID == "PID-0815"
    # its own study and patient: no question
    own = export_dicom_series(syn, tmp_path / "own", source=tmp_path / "a")
    assert own.study_instance_uid == a.source.study_instance_uid


# -- values and sources that must not make a series (item 9) -----------------------------------------------


def test_constant_volume_gets_a_window_of_width_at_least_one(tmp_path):
    src = dicom_source(tmp_path)
    flat = src.derive(np.full(src.shape, 7.25, np.float32), modality="T2", synthetic=True)
    result = export_dicom_series(flat, tmp_path / "out")
    ds = pydicom.dcmread(result.files[0])
    assert float(ds.WindowWidth) >= 1.0 and abs(float(ds.WindowCenter) - 7.25) < 1e-3
    np.testing.assert_allclose(load(tmp_path / "out").data, 7.25, atol=1e-3)
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(result.files[0]) == []


@pytest.mark.parametrize("shape", [(0, 20, 8), (24, 20, 0)])
def test_empty_volume_is_refused_before_anything_is_written(tmp_path, shape):
    src = dicom_source(tmp_path)
    empty = Volume(np.zeros(shape, np.float32), src.affine, modality="T2", source=src.source, synthetic=True)
    with pytest.raises(InvalidVolumeError, match="no voxels"):
        export_dicom_series(empty, tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()


def test_non_finite_voxels_are_refused_before_anything_is_written(tmp_path):
    syn = synthetic_from(dicom_source(tmp_path))
    bad = syn.derive(np.where(syn.data > syn.data.mean(), np.inf, syn.data))
    with pytest.raises(InvalidVolumeError, match="NaN or infinite"):
        export_dicom_series(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _rewrite(folder, index, **values):
    path = sorted(folder.glob("*.dcm"))[index]
    ds = pydicom.dcmread(path)
    for key, value in values.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_source_folder_is_checked_like_load_checks_it(tmp_path):
    syn = synthetic_from(dicom_source(tmp_path))
    write_dicom_series(make_volume(), tmp_path / "mixed", series_description="T1", **PATIENT)
    _rewrite(tmp_path / "mixed", 3, ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    write_dicom_series(make_volume(), tmp_path / "dup", series_description="T1", **PATIENT)
    first = pydicom.dcmread(sorted((tmp_path / "dup").glob("*.dcm"))[0])
    _rewrite(tmp_path / "dup", 1, ImagePositionPatient=first.ImagePositionPatient)
    for name, expected in (("mixed", "mixes slice orientations"), ("dup", "share a position")):
        with pytest.raises(DicomReadError, match=expected):
            load(tmp_path / name)
        with pytest.raises(DicomReadError, match=expected):
            export_dicom_series(syn, tmp_path / f"out-{name}", source=tmp_path / name, allow_other_study=True)
        assert not (tmp_path / f"out-{name}").exists()


def test_failed_export_removes_what_it_created_and_nothing_else(tmp_path, monkeypatch):
    from napari_medtrans.core.io import dicom_write

    syn = synthetic_from(dicom_source(tmp_path))
    real_save, calls = dicom_write._save, []

    def failing_save(ds, path, ts, pixels):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real_save(ds, path, ts, pixels)

    monkeypatch.setattr(dicom_write, "_save", failing_save)
    with pytest.raises(OSError, match="No space"):
        export_dicom_series(syn, tmp_path / "made" / "here")
    assert not (tmp_path / "made").exists()  # both folders the export made are gone
    (tmp_path / "existing").mkdir()
    calls.clear()
    with pytest.raises(OSError, match="No space"):
        export_dicom_series(syn, tmp_path / "existing")
    assert (tmp_path / "existing").is_dir() and list((tmp_path / "existing").iterdir()) == []


# -- conformance on sparse sources and de-identification (item 10) -----------------------------------------

#: What a minimal source series keeps: enough to read it, nothing else.
_MINIMAL = {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
            "Modality", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
            "BitsStored", "HighBit", "PixelRepresentation", "PixelData", "ImagePositionPatient",
            "ImageOrientationPatient", "PixelSpacing", "RescaleSlope", "RescaleIntercept", "SeriesDescription"}


def sparse_source(tmp_path, name="sparse", **extra):
    """A source series holding only what reading it needs (plus ``extra`` attributes), and its Volume."""
    write_dicom_series(make_volume(), tmp_path / f"{name}-full", series_description="T1 AX", **PATIENT)
    (tmp_path / name).mkdir()
    for path in sorted((tmp_path / f"{name}-full").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        for elem in list(ds):
            if elem.keyword not in _MINIMAL:
                del ds[elem.tag]
        for key, value in extra.items():
            setattr(ds, key, value)
        ds.save_as(tmp_path / name / path.name)
    return load(tmp_path / name)


@pytest.mark.parametrize("deidentify", [False, True])
def test_sparse_source_gets_every_type2_attribute(tmp_path, deidentify):
    from napari_medtrans.core.io.dicom_export import TYPE2_KEYWORDS

    syn = synthetic_from(sparse_source(tmp_path))
    result = export_dicom_series(syn, tmp_path / "out", deidentify=deidentify)
    ds = pydicom.dcmread(result.files[0])
    missing = [kw for kw in TYPE2_KEYWORDS if kw not in ds]
    assert missing == []
    assert ds.PositionReferenceIndicator == "" and ds.Laterality == ""  # body part unknown: laterality unknown
    for kw in ("PatientBirthDate", "ReferringPhysicianName", "StudyID", "AccessionNumber", "PatientPosition"):
        assert kw in ds
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(result.files[0]) == []


@pytest.mark.parametrize("deidentify", [False, True])
def test_animal_patient_gets_the_type2c_patient_attributes(tmp_path, deidentify):
    src = sparse_source(tmp_path, PatientSpeciesDescription="Canis familiaris", PatientID="DOG-1",
                        BodyPartExamined="HEAD")
    ds = pydicom.dcmread(export_dicom_series(synthetic_from(src), tmp_path / "out", deidentify=deidentify).files[0])
    assert ds.PatientSpeciesDescription == "Canis familiaris"
    for kw in ("PatientBreedDescription", "PatientBreedCodeSequence", "BreedRegistrationSequence",
               "ResponsiblePerson", "ResponsibleOrganization", "PatientSexNeutered"):
        assert kw in ds, kw
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(ds.filename) == []


@pytest.mark.parametrize(("body", "laterality", "expected"),
                         [("HEAD", None, None), ("BRAIN", None, None), ("KNEE", None, ""), ("KNEE", "L", "L"),
                          ("", None, "")])
def test_laterality_is_written_when_the_body_part_may_be_paired(tmp_path, body, laterality, expected):
    extra = {"BodyPartExamined": body} if body else {}
    if laterality:
        extra["Laterality"] = laterality
    syn = synthetic_from(sparse_source(tmp_path, **extra))
    ds = pydicom.dcmread(export_dicom_series(syn, tmp_path / "out").files[0])
    assert ds.get("Laterality") == expected
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(ds.filename) == []


def _value_for(keyword: str):
    """A valid, recognisable value for ``keyword``'s VR (the marker "SECRET" wherever text may hold it)."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataset import Dataset

    vr = dictionary_VR(keyword)
    text = {"PN": "SECRET^NAME", "LO": f"SECRET {keyword}"[:64], "SH": "SECRET-SH", "ST": f"SECRET {keyword}",
            "LT": f"SECRET {keyword}", "UT": f"SECRET {keyword}", "CS": "SECRET", "DA": "19610203",
            "TM": "101112", "DT": "19610203101112", "AS": "061Y", "DS": "71.5", "IS": "7", "US": 4,
            "UI": "1.2.3.4.5.6.7.8.9"}
    if keyword == "TimezoneOffsetFromUTC":
        return "+0100"
    if keyword == "PatientSex":
        return "F"
    if vr == "SQ":
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "SECRET", "99SECRET", "SECRET meaning"
        return pydicom.Sequence([item])
    return text[vr]


def test_deidentification_applies_the_listed_profile_actions(tmp_path):
    from napari_medtrans.core.io.dicom_export import DEIDENTIFICATION

    assert {"PositionReferenceIndicator", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
            "PatientAge", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "StationName",
            "OperatorsName", "AccessionNumber", "StudyID", "StudyDate", "OtherPatientIDsSequence",
            "RequestAttributesSequence", "StudyInstanceUID", "FrameOfReferenceUID"} <= set(DEIDENTIFICATION)
    assert set(DEIDENTIFICATION.values()) <= {"X", "Z", "D", "U"}
    filled = {kw: _value_for(kw) for kw, action in DEIDENTIFICATION.items() if action != "U"}
    filled["PositionReferenceIndicator"] = "SECRET LANDMARK OF DR SMITH"
    src = sparse_source(tmp_path, **filled)
    source_ds = src.source.dicom_datasets[0]
    for kw in filled:
        assert kw in source_ds, kw
    result = export_dicom_series(synthetic_from(src), tmp_path / "out", deidentify=True, uid_salt="s")
    for path in result.files:
        assert b"SECRET" not in path.read_bytes()
        ds = pydicom.dcmread(path)
        for kw, action in DEIDENTIFICATION.items():
            if action == "X":
                assert kw not in ds, f"{kw} should be removed"
            elif action == "Z":
                assert kw in ds and ds[kw].value in ("", None), f"{kw} should be present and empty"
            elif action == "D":
                assert str(ds[kw].value) == "ANONYMOUS", kw
            elif kw in source_ds:  # U: mapped (study, frame of reference) or new (series, instance)
                assert kw in ds and str(ds[kw].value) != str(source_ds[kw].value), kw
        assert ds.StudyInstanceUID.startswith("2.25.") and ds.FrameOfReferenceUID.startswith("2.25.")
        for ref in ds.SourceImageSequence:
            assert ref.ReferencedSOPInstanceUID.startswith("2.25.")
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    if shutil.which("dciodvfy"):
        assert dciodvfy_errors(result.files[0]) == []
