"""`medtrans translate --format dicom` and `medtrans export`: synthetic DICOM series from the command line."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core.io import load, write_nifti
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.phantom import make_subject
from napari_medtrans.core.weights import sha256_file
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "unet.safetensors"
    save_checkpoint(create_translator("unet", width=4, depth=2), path)
    return path


@pytest.fixture(scope="module")
def dicom_t1(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    t1 = make_subject(8, shape=(32, 32, 10)).images["T1"]
    write_dicom_series(t1, root / "T1", series_description="T1 AX", patient_name="ROE^RICHARD",
                       patient_id="MRN-123")
    return root / "T1"


def headers(folder):
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def test_translate_dicom_input_to_dicom_series_in_its_study(dicom_t1, model, tmp_path, capsys):
    out = tmp_path / "t2_dicom"
    assert main(["translate", str(dicom_t1), "--model", str(model), "--format", "dicom", "--out", str(out),
                 "--device", "cpu"]) == 0
    src = load(dicom_t1)
    written = headers(out)
    assert len(written) == 10
    sha = sha256_file(model)
    for ds, source in zip(written, src.source.dicom_datasets):
        assert ds.StudyInstanceUID == src.source.study_instance_uid and ds.PatientID == "MRN-123"
        assert ds.SyntheticData == "YES" and ds.SeriesDescription.startswith("SYNTHETIC T2")
        assert "unet" in ds.DerivationDescription and sha in ds.DerivationDescription
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    back = load(out)
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-4)
    assert back.synthetic and back.modality == "T2"
    assert f"in study {src.source.study_instance_uid}" in capsys.readouterr().out


def test_translate_nifti_to_deidentified_dicom_and_bad_out(dicom_t1, model, tmp_path, capsys):
    nifti = write_nifti(load(dicom_t1), tmp_path / "t1.nii.gz")
    out = tmp_path / "anon"
    assert main(["translate", str(nifti), "--model", str(model), "--format", "dicom", "--out", str(out),
                 "--deidentify"]) == 0
    ds = headers(out)[0]
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == "ANONYMOUS"
    assert "in a new study" in capsys.readouterr().out
    assert main(["translate", str(nifti), "--model", str(model), "--format", "dicom",
                 "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "must be a folder" in capsys.readouterr().err
    assert main(["translate", str(nifti), "--model", str(model), "--out", str(tmp_path / "folder")]) == 2
    assert "--format dicom" in capsys.readouterr().err


def test_export_nifti_into_the_source_study(dicom_t1, model, tmp_path, capsys):
    t2 = tmp_path / "t2_synthetic.nii.gz"
    assert main(["translate", str(dicom_t1), "--model", str(model), "--out", str(t2)]) == 0
    out = tmp_path / "exported"
    assert main(["export", str(t2), str(out), "--source", str(dicom_t1), "--model", str(model)]) == 0
    captured = capsys.readouterr()
    assert "wrote 10 files" in captured.out and "warning" not in captured.err
    src = load(dicom_t1)
    ds = headers(out)[4]
    assert ds.StudyInstanceUID == src.source.study_instance_uid and str(ds.PatientName) == "ROE^RICHARD"
    assert ds.SyntheticData == "YES" and "by unet" in ds.DerivationDescription
    assert sha256_file(model) in ds.DerivationDescription
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.source.dicom_datasets[4].SOPInstanceUID
    np.testing.assert_allclose(load(out).affine, src.affine, atol=1e-4)


def test_export_errors_name_the_problem(dicom_t1, tmp_path, capsys):
    t1 = write_nifti(load(dicom_t1), tmp_path / "t1.nii.gz")
    assert main(["export", str(dicom_t1), str(tmp_path / "o")]) == 2
    assert "must be a .nii" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert main(["export", str(t1), str(busy)]) == 2
    assert f"{busy}: folder is not empty" in capsys.readouterr().err
    write_dicom_series(make_subject(9, shape=(32, 32, 10)).images["T2"], tmp_path / "two",
                       series_description="T2", series_number=5)
    write_dicom_series(load(dicom_t1), tmp_path / "two", series_description="T1 copy", series_number=6)
    assert main(["export", str(t1), str(tmp_path / "o2"), "--source", str(tmp_path / "two")]) == 2
    assert "choose one" in capsys.readouterr().err


def test_export_is_listed_in_help(capsys):
    assert main([]) == 0
    assert "export a NIfTI volume as a synthetic DICOM series" in capsys.readouterr().out
