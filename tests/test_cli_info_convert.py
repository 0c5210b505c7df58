"""`medtrans info` and `medtrans convert` through napari_medtrans.cli.main."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core.io import load
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.core.volume import Volume


def volume(shape=(24, 20, 8), seed=0, modality="T2", synthetic=False) -> Volume:
    aff = np.eye(4)
    aff[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0.0]]) @ np.diag([0.9, 1.2, 3.0])  # sagittal
    aff[:3, 3] = [5.0, -10.0, 20.0]
    data = np.random.default_rng(seed).random(shape).astype(np.float32) * 700 + 10
    return Volume(data, aff, modality=modality, synthetic=synthetic)


@pytest.fixture
def two_series(tmp_path):
    folder = tmp_path / "study"
    a = write_dicom_series(volume(), folder, series_description="SAG T2 TSE", series_number=1)
    b = write_dicom_series(volume(shape=(24, 20, 5), seed=1, modality="FLAIR"), folder,
                           series_description="SAG FLAIR", series_number=2, synthetic=True)
    return folder, pydicom.dcmread(a[0]).SeriesInstanceUID, pydicom.dcmread(b[0]).SeriesInstanceUID


def test_info_dicom_single_series(tmp_path, capsys):
    write_dicom_series(volume(), tmp_path / "s", series_description="SAG T2 TSE")
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "1 series" in out and "SAG T2 TSE" in out and "8 files" in out
    assert "24 x 20 x 8" in out
    assert "0.9 x 1.2 x 3 mm" in out
    assert "orientation: PIR" in out
    assert "modality:    T2" in out
    assert "synthetic:   no" in out
    lo, hi = load(tmp_path / "s").data.min(), load(tmp_path / "s").data.max()
    assert f"value range: {lo:.6g} to {hi:.6g}" in out


def test_info_lists_several_series_and_exits_2(two_series, capsys):
    folder, uid_t2, uid_flair = two_series
    assert main(["info", str(folder)]) == 2
    out = capsys.readouterr().out
    assert uid_t2 in out and uid_flair in out
    assert "SAG T2 TSE" in out and "SAG FLAIR" in out and "--series" in out
    assert "shape" not in out  # nothing was read

    assert main(["info", str(folder), "--series", uid_flair]) == 0
    out = capsys.readouterr().out
    assert "24 x 20 x 5" in out and "modality:    FLAIR" in out and "synthetic:   yes" in out


def test_info_nifti_and_missing_path(tmp_path, capsys):
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "6 x 5 x 4" in out and "2 x 2 x 2 mm" in out and "RAS" in out and "T1" in out
    assert "DICOM" not in out
    missing = tmp_path / "nope"
    assert main(["info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err


def test_convert_dicom_to_nifti_keeps_affine(tmp_path, capsys):
    write_dicom_series(volume(), tmp_path / "s", series_description="SAG T2")
    out = tmp_path / "out" / "t2.nii.gz"
    assert main(["convert", str(tmp_path / "s"), str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    img = nib.load(str(out))
    ref = load(tmp_path / "s")
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    np.testing.assert_allclose(img.affine, volume().affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj), ref.data)


def test_convert_several_series_needs_series(two_series, tmp_path, capsys):
    folder, uid_t2, uid_flair = two_series
    out = tmp_path / "x.nii.gz"
    assert main(["convert", str(folder), str(out)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and uid_t2 in err and uid_flair in err
    assert not out.exists()
    assert main(["convert", str(folder), str(out), "--series", uid_flair]) == 0
    assert nib.load(str(out)).shape == (24, 20, 5)
    assert nib.load(str(out)).header["descrip"].tobytes().startswith(b"SYNTHETIC")


def test_convert_uneven_needs_flag(tmp_path, capsys):
    files = write_dicom_series(volume(), tmp_path / "s", series_description="SAG T2")
    files[2].unlink()
    out = tmp_path / "x.nii"
    assert main(["convert", str(tmp_path / "s"), str(out)]) == 2
    assert "uneven slice spacing" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "s"), str(out), "--allow-uneven"]) == 0
    assert "uneven slice spacing" in capsys.readouterr().out
    assert nib.load(str(out)).shape == (24, 20, 7)


def test_convert_refuses_non_nifti_output(tmp_path, capsys):
    write_dicom_series(volume(), tmp_path / "s", series_description="SAG T2")
    assert main(["convert", str(tmp_path / "s"), str(tmp_path / "out.img")]) == 2
    assert ".nii" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["info", "convert"])
def test_help_reads_well(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--series UID" in out and "--allow-uneven" in out and "examples:" in out


def test_info_describes_a_model_file_from_its_metadata(tmp_path, capsys):
    import hashlib

    from napari_medtrans.translators.base import create_translator
    from napari_medtrans.translators.checkpoint import save_checkpoint

    path = save_checkpoint(create_translator("unet", width=4, depth=2, inputs=("FLAIR",), outputs=("T2",)),
                           tmp_path / "m.safetensors",
                           training={"command": "medtrans train --method unet", "steps": 7},
                           metrics={"psnr": 27.5})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "method:      unet" in out and "direction:   FLAIR -> T2" in out
    assert hashlib.sha256(path.read_bytes()).hexdigest() in out
    assert "trained with: medtrans train --method unet" in out and "steps: 7" in out and "psnr 27.5" in out


def test_info_on_a_truncated_model_file_names_it(tmp_path, capsys):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(b"\x10\x00\x00")
    assert main(["info", str(bad)]) != 0
    assert "cut.safetensors" in capsys.readouterr().err
