"""`medtrans phantom`: writes the dataset it says it writes, one progress line per subject, clear errors."""

import numpy as np
import pytest

from napari_medtrans.cli import build_parser, main
from napari_medtrans.core import io
from napari_medtrans.core.dataset import load_dataset
from napari_medtrans.phantom import CONTRASTS, make_subject, subject_seed


def test_phantom_command_writes_subjects_manifest_and_reports(tmp_path, capsys):
    out = tmp_path / "data"
    rc = main(["phantom", str(out), "--subjects", "3", "--shape", "20", "20", "10", "--seed", "4", "--tumour",
               "--snr", "25"])
    assert rc == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert str(out) in lines[0] and "with tumours" in lines[0]
    progress = [ln for ln in lines if ln.strip().startswith("[")]
    assert [ln.split()[0] for ln in progress] == ["[1/3]", "[2/3]", "[3/3]"]
    assert all(f"sub-{k:03d}" in ln for k, ln in enumerate(progress))
    assert "dataset.json" in lines[-1] and "1 test" in lines[-1]

    ds = load_dataset(out)
    assert [s.id for s in ds.subjects] == ["sub-000", "sub-001", "sub-002"]
    assert sorted(ds.modalities) == sorted(CONTRASTS)
    assert {s.split for s in ds.subjects} == {"train", "val", "test"}
    for s in ds.subjects:
        assert f"({s.split})" in progress[int(s.id[-3:])]
    # the files hold the subject the library makes for that seed
    ref = make_subject(subject_seed(4, 2), shape=(20, 20, 10), tumour=True, snr=25.0, subject_id="sub-002")
    t1 = io.load(out / "sub-002" / "T1.nii.gz")
    assert np.array_equal(t1.data, ref.images["T1"].data)
    labels = io.load(out / "sub-002" / "labels.nii.gz").data
    assert labels.max() >= 4
    assert not (out / "sub-000" / "dicom").exists()


def test_phantom_command_writes_dicom_on_request(tmp_path, capsys):
    out = tmp_path / "dcm"
    assert main(["phantom", str(out), "--subjects", "1", "--shape", "12", "12", "4", "--dicom"]) == 0
    assert "NIfTI + DICOM" in capsys.readouterr().out
    for c in CONTRASTS:
        vol = io.load(out / "sub-000" / "dicom" / c)
        assert vol.shape == (12, 12, 4)
        assert np.allclose(vol.affine, io.load(out / "sub-000" / f"{c}.nii.gz").affine, atol=1e-3)


def test_phantom_help_and_bad_arguments(tmp_path, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["phantom", "--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--subjects", "--tumour", "--dicom", "--seed", "--snr", "--shape", "--anatomy", "mni152"):
        assert option in help_text
    for bad in (["--subjects", "0"], ["--shape", "20", "20"], ["--anatomy", "brainweb"], ["--snr", "-1"]):
        with pytest.raises(SystemExit) as info:
            main(["phantom", str(tmp_path / "x"), *bad])
        assert info.value.code == 2
    capsys.readouterr()
    assert main(["phantom", str(tmp_path / "x"), "--split", "0", "0", "0"]) == 2
    assert "split" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["phantom", str(blocker), "--shape", "8", "8", "4"]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "not a folder" in err


def test_phantom_command_acquisition_and_tumour_options(tmp_path, capsys):
    import json

    out = tmp_path / "opts"
    assert main(["phantom", str(out), "--subjects", "4", "--shape", "16", "16", "8", "--anatomy", "procedural",
                 "--tumour", "0.5", "--snr", "20", "FLAIR=8", "--registered", "--gibbs", "0.7",
                 "--no-mass-effect"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "tumour probability 0.5" in first and "FLAIR 8" in first
    params = [json.loads((out / f"sub-{k:03d}" / "phantom.json").read_text()) for k in range(4)]
    assert {p["anatomy"] for p in params} == {"procedural"}
    assert all(p["misregistration"] == {"enabled": False} for p in params)
    assert all(p["gibbs_k_space_fraction"] == 0.7 for p in params)
    assert params[0]["snr_wm"]["FLAIR"] == 8.0 and params[0]["snr_wm"]["T1"] == 20.0
    assert params[0]["snr_wm"]["T2"] == pytest.approx(18.0)  # the others follow T1's by the protocol's ratio
    from napari_medtrans.phantom import has_tumour

    assert [p["tumour"] for p in params] == [has_tumour(subject_seed(0, k), 0.5) for k in range(4)]
    assert all(p["tumour_params"] is None or p["tumour_params"]["mass_effect"] == 0.0 for p in params)
    for bad in (["--snr", "DWI=3"], ["--snr", "20", "30"], ["--tumour", "1.5"], ["--gibbs", "0"]):
        with pytest.raises(SystemExit) as info:
            rc = main(["phantom", str(tmp_path / "y"), "--shape", "8", "8", "4", *bad])
            raise SystemExit(rc)
        assert info.value.code == 2, bad
