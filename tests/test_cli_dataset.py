"""`medtrans dataset index` (issue 24, item 1-2): BraTS 2021, BraTS 2023, BIDS and IXI folders made here index with
no hand-editing, unknown files are listed, and contrasts on different grids are reported."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_medtrans.cli import main
from napari_medtrans.core.dataset import load_dataset
from napari_medtrans.training.layouts import check_alignment, detect_layout, index_folder

AFFINE = np.diag([1.0, 1.0, 1.5, 1.0])


def _nii(path, shape=(6, 7, 5), affine=AFFINE, value=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full(shape, value, np.float32), affine), str(path))


def _brats2021(root):
    for sid in ("BraTS2021_00000", "BraTS2021_00002"):
        for c in ("t1", "t1ce", "t2", "flair", "seg"):
            _nii(root / sid / f"{sid}_{c}.nii.gz")
    (root / "README.txt").write_text("not an image")
    _nii(root / "BraTS2021_00000" / "BraTS2021_00000_t1_brainmask.nii.gz")  # no rule: listed


def _brats2023(root):
    for sid in ("BraTS-GLI-00000-000", "BraTS-GLI-00003-001"):
        for c in ("t1n", "t1c", "t2w", "t2f", "seg"):
            _nii(root / sid / f"{sid}-{c}.nii.gz")


def _bids(root):
    _nii(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    _nii(root / "sub-01" / "anat" / "sub-01_ce-gadolinium_T1w.nii.gz")
    _nii(root / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    _nii(root / "sub-01" / "anat" / "sub-01_FLAIR.nii")
    _nii(root / "sub-01" / "anat" / "sub-01_run-2_T2w.nii.gz")  # a second T2w: kept aside
    _nii(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz")
    _nii(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_PDw.nii.gz")
    _nii(root / "sub-02" / "ses-2" / "anat" / "sub-02_ses-2_T1w.nii.gz")
    _nii(root / "sub-02" / "ses-1" / "func" / "sub-02_ses-1_task-rest_bold.nii.gz")


def _ixi(root):
    for sid in ("IXI002-Guys-0828", "IXI012-HH-1211"):
        # IXI's T1 is its own acquisition: another grid than the T2/PD dual echo
        _nii(root / "IXI-T1" / f"{sid}-T1.nii.gz", shape=(8, 8, 5), affine=np.diag([1.2, 0.9, 0.9, 1.0]))
        _nii(root / "IXI-T2" / f"{sid}-T2.nii.gz")
        _nii(root / "IXI-PD" / f"{sid}-PD.nii.gz")
    _nii(root / "IXI-MRA" / "IXI002-Guys-0828-MRA.nii.gz")


@pytest.mark.parametrize("layout, make, subjects, images", [
    ("brats2021", _brats2021, ["BraTS2021_00000", "BraTS2021_00002"], {"T1", "T1c", "T2", "FLAIR"}),
    ("brats2023", _brats2023, ["BraTS-GLI-00000-000", "BraTS-GLI-00003-001"], {"T1", "T1c", "T2", "FLAIR"}),
    ("bids", _bids, ["sub-01", "sub-02_ses-1", "sub-02_ses-2"], None),
    ("ixi", _ixi, ["IXI002-Guys-0828", "IXI012-HH-1211"], {"T1", "T2", "PD"}),
])
def test_each_layout_indexes_with_no_hand_editing(tmp_path, capsys, layout, make, subjects, images):
    root = tmp_path / layout
    make(root)
    assert detect_layout(root) == layout
    assert main(["dataset", "index", str(root)]) == 0
    out = capsys.readouterr()
    assert f"layout {layout}: {len(subjects)} subjects" in out.out
    ds = load_dataset(root)
    assert [s.id for s in ds.subjects] == subjects
    ds.check_files()
    if images is not None:
        assert all(set(s.images) == images for s in ds.subjects)
    if layout.startswith("brats"):
        assert all(s.labels is not None and s.labels.endswith(("_seg.nii.gz", "-seg.nii.gz")) for s in ds.subjects)
    again = index_folder(root)  # the same split every time
    assert [s.split for s in again.dataset.subjects] == [s.split for s in ds.subjects]
    assert main(["dataset", "index", str(root)]) == 2  # an existing manifest is not replaced silently
    assert "--overwrite" in capsys.readouterr().err


def test_bids_entities_and_unplaced_files_are_reported_not_guessed(tmp_path, capsys):
    _bids(tmp_path)
    result = index_folder(tmp_path)
    sub1 = result.dataset.subjects[0]
    assert sub1.images == {"FLAIR": "sub-01/anat/sub-01_FLAIR.nii", "T1": "sub-01/anat/sub-01_T1w.nii.gz",
                           "T1c": "sub-01/anat/sub-01_ce-gadolinium_T1w.nii.gz",
                           "T2": "sub-01/anat/sub-01_T2w.nii.gz"}
    assert result.duplicates == ["sub-01/anat/sub-01_run-2_T2w.nii.gz"]
    assert result.unknown == ["sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.nii.gz"]
    main(["dataset", "index", str(tmp_path)])
    out = capsys.readouterr().out
    assert "sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.nii.gz" in out and "run-2_T2w" in out


def test_misregistered_contrasts_are_detected_and_recorded(tmp_path, capsys):
    _ixi(tmp_path)
    problems = check_alignment(index_folder(tmp_path).dataset)
    assert {(p.subject, p.modality) for p in problems} == {("IXI002-Guys-0828", "T2"), ("IXI002-Guys-0828", "PD"),
                                                           ("IXI012-HH-1211", "T2"), ("IXI012-HH-1211", "PD")}
    assert main(["dataset", "index", str(tmp_path), "--out", str(tmp_path / "manifests" / "ixi.json")]) == 0
    err = capsys.readouterr().err
    assert "2 subject(s) whose contrasts do not share one voxel grid" in err and "IXI002-Guys-0828: T2 vs T1" in err
    doc = json.loads((tmp_path / "manifests" / "ixi.json").read_text())
    assert sorted(doc["misaligned"]) == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    ds = load_dataset(tmp_path / "manifests" / "ixi.json")  # paths relative to the manifest's folder
    ds.check_files()
    assert "MRA" in " ".join(index_folder(tmp_path).unknown)


def test_a_shifted_affine_on_the_same_grid_is_caught(tmp_path):
    _brats2021(tmp_path)
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0  # 2 mm off
    _nii(tmp_path / "BraTS2021_00002" / "BraTS2021_00002_t2.nii.gz", affine=shifted)
    (p,) = check_alignment(index_folder(tmp_path).dataset)
    assert (p.subject, p.modality, p.reason) == ("BraTS2021_00002", "T2", "affines differ")
    assert p.max_mm == pytest.approx(2.0)


def test_a_folder_of_unknown_files_gets_a_clear_error(tmp_path, capsys):
    _nii(tmp_path / "scan_a.nii.gz")
    assert main(["dataset", "index", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no file follows a known layout" in err and "scan_a.nii.gz" in err
    assert main(["dataset", "index", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_register_aligns_a_misregistered_phantom_contrast_below_half_a_voxel(tmp_path, capsys):
    """A phantom subject in the BraTS 2021 layout whose T2 header places it 5 degrees and 3.9 mm off its T1: the
    check catches it, --register recovers the transform to within half a voxel and the manifest names the aligned
    file, on the T1's grid."""
    from napari_medtrans.core import io
    from napari_medtrans.phantom import make_subject
    from napari_medtrans.training.registration import RegistrationResult

    s = make_subject(4, shape=(64, 64, 40))
    sid = "BraTS2021_00007"
    io.save(s.images["T1"], tmp_path / sid / f"{sid}_t1.nii.gz")
    a = np.deg2rad(5.0)
    rigid = np.eye(4)
    rigid[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    rigid[:3, 3] = [3.0, -2.0, 1.5]
    nib.save(nib.Nifti1Image(s.images["T2"].data, rigid @ s.images["T2"].affine),
             str(tmp_path / sid / f"{sid}_t2.nii.gz"))
    assert main(["dataset", "index", str(tmp_path), "--register"]) == 0
    out = capsys.readouterr()
    assert "1 subject(s) whose contrasts do not share one voxel grid" in out.err
    assert "after registration: 0 subject(s) still misaligned" in out.out
    doc = json.loads((tmp_path / "dataset.json").read_text())
    assert doc["subjects"][0]["images"]["T2"] == f"registered/{sid}/T2.nii.gz" and "misaligned" not in doc
    rec = doc["registration"][sid]["T2"]
    assert rec["source"] == f"{sid}/{sid}_t2.nii.gz" and rec["nmi_after"] > rec["nmi_before"] + 0.05
    ds = load_dataset(tmp_path)
    assert check_alignment(ds) == []
    # residual: the fitted transform against the true one, over the brain, in voxels (LPS as ITK works)
    fitted = RegistrationResult(tuple(rec["parameters"]), tuple(rec["center"]), 0.0, 0.0, 0).matrix()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    true = lps @ rigid @ lps
    t1 = s.images["T1"]
    ijk = np.argwhere(t1.data > np.percentile(t1.data, 60))[::20]
    pts = lps @ t1.affine @ np.c_[ijk, np.ones(len(ijk))].T
    err_mm = np.linalg.norm((fitted @ pts - true @ pts)[:3], axis=0)
    voxel = np.sqrt((t1.affine[:3, :3] ** 2).sum(0)).min()
    assert err_mm.max() / voxel < 0.5
    aligned = io.load(tmp_path / "registered" / sid / "T2.nii.gz")
    assert aligned.shape == t1.shape and np.allclose(aligned.affine, t1.affine, atol=1e-4)


@pytest.mark.parametrize("layout, values", [("brats2021", (1, 2, 4)), ("brats2023", (1, 2, 3))])
def test_brats_labels_are_read_as_the_projects_tumour_compartments(tmp_path, layout, values):
    """Issue 24 item 3: BraTS necrotic core / oedema / enhancing tumour become the project's 6 / 4 / 5 wherever a
    label map is read (the training slices, evaluate's tumour split); a value outside the scheme is refused."""
    from napari_medtrans.core.dataset import DatasetError
    from napari_medtrans.training.datasets import UnpairedSliceDataset
    from napari_medtrans.training.evaluate import _has_tumour

    (_brats2021 if layout == "brats2021" else _brats2023)(tmp_path)
    seg = np.zeros((6, 7, 5), np.float32)
    seg[1:5, 1:6, 1:4] = values[1]  # oedema
    seg[2:4, 2:5, 2] = values[2]  # enhancing
    seg[3, 3, 2] = values[0]  # necrosis
    for s in index_folder(tmp_path).dataset.subjects:
        nib.save(nib.Nifti1Image(seg, AFFINE), str(tmp_path / s.labels))
    assert main(["dataset", "index", str(tmp_path)]) == 0
    ds = load_dataset(tmp_path)
    assert ds.label_scheme == layout
    mapped = ds.convert_labels(seg.astype(np.int32))
    assert mapped[3, 3, 2] == 6 and mapped[2, 2, 2] == 5 and mapped[1, 1, 1] == 4 and mapped[0, 0, 0] == 0
    assert _has_tumour(ds, ds.subjects[0]) is True
    train = UnpairedSliceDataset(ds, None, inputs="T1", outputs="T2", labels=True, min_foreground=0.0)
    got = set(np.unique(np.concatenate([np.asarray(train[i]["labels"]).ravel() for i in range(len(train))])))
    assert got <= {0, 4, 5, 6} and {4, 5} <= got
    with pytest.raises(DatasetError, match=r"label values \[7\].*" + layout):
        ds.convert_labels(np.full((2, 2, 2), 7, np.int32), "seg.nii.gz")


@pytest.mark.parametrize("layout", ["brats2021", "brats2023", "bids"])
def test_the_phantom_writes_a_public_layout_that_indexes_and_evaluates(tmp_path, capsys, layout):
    """Issue 24 item 4: `medtrans phantom --layout` writes BraTS / BIDS file names; the manifest comes from the
    indexer, the tumour keeps its compartments through BraTS's label values, and the floors run on it."""
    from napari_medtrans.phantom import make_subject

    out = tmp_path / layout
    assert main(["phantom", str(out), "--subjects", "3", "--tumour", "--shape", "24", "24", "16",
                 "--anatomy", "procedural", "--layout", layout, "--split", "0.34", "0.33", "0.33"]) == 0
    ds = load_dataset(out)
    assert len(ds.subjects) == 3 and detect_layout(out) == layout
    assert {"T1", "T2", "FLAIR", "T1c"} <= set(ds.modalities)
    if layout == "bids":
        assert ds.subjects[0].images["T1c"].endswith("_ce-gadolinium_T1w.nii.gz") and ds.subjects[0].labels is None
    else:
        assert ds.label_scheme == layout
        seed = json.loads((out / ds.subjects[0].id / "phantom.json").read_text())["seed"]
        sub0 = make_subject(seed, shape=(24, 24, 16), anatomy="procedural", tumour=True)
        ours = np.rint(sub0.labels.data).astype(int)
        theirs = ds.convert_labels(np.rint(nib.load(str(ds.path(ds.subjects[0].labels))).get_fdata()).astype(int))
        tumour = ours >= 4
        assert np.array_equal(theirs[tumour], ours[tumour]) and not theirs[~tumour].any()
    assert main(["phantom", str(tmp_path / "x"), "--layout", layout, "--dicom"]) == 2
    if layout == "brats2021":  # the README's path: index, train, evaluate with a paper's protocol
        for s in ds.subjects:
            s.split = "train" if s is ds.subjects[0] else "test"
        ds.save()
        assert main(["train", "--method", "unet", "--data", str(out), "--out", str(tmp_path / "run"), "--width", "4",
                     "--depth", "2", "--steps", "2", "--size", "16", "16", "--val-every", "0", "--threads", "1"]) == 0
        assert main(["evaluate", "--model", str(tmp_path / "run" / "model.safetensors"), "--data", str(out),
                     "--protocol", "hifisyn", "--by-tumour", "--precision", "fp32"]) == 0
        report = capsys.readouterr().out
        assert "HiFi-Syn protocol" in report and "floor: histogram" in report
