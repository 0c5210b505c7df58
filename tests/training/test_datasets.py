"""Slice datasets built from volumes: pairing, normalisation, skipping empty slices, padding, augmentation."""

import numpy as np
import pytest
import torch

from napari_medtrans.core.dataset import Dataset, DatasetError, Subject
from napari_medtrans.core.errors import GeometryMismatchError, MedtransError
from napari_medtrans.core.io import load, write_nifti
from napari_medtrans.core.preprocess import normalise, robust_range
from napari_medtrans.core.volume import Volume
from napari_medtrans.training.datasets import TARGET_HEADROOM, PairedSliceDataset, UnpairedSliceDataset

SHAPE = (20, 24, 10)
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
BRAIN_SLICES = range(2, 8)  # the mask is empty on slices 0, 1, 8, 9


# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _t1(seed):
    rng = np.random.default_rng(seed)
    data = np.zeros(SHAPE, np.float32)
    data[4:16, 3:21, 2:8] = rng.uniform(100, 500 + 100 * seed, size=(12, 18, 6))
    return data


def _write(root, n=4, splits=("train", "train", "train", "val"), t2_shape=SHAPE, masks=True):
    subjects = []
    for i in range(n):
        sid = f"sub-{i}"
        t1 = _t1(i)
        mask = (t1 > 0).astype(np.float32)
        # T2 is T1 scaled: after per-volume normalisation the two are the same image, slice by slice.
        t2 = np.zeros(t2_shape, np.float32)
        t2[: SHAPE[0], : SHAPE[1], : SHAPE[2]] = 2.0 * t1[: t2_shape[0], : t2_shape[1], : t2_shape[2]] * (i + 1)
        write_nifti(Volume(t1, AFFINE), root / sid / "T1.nii.gz")
        write_nifti(Volume(t2, AFFINE), root / sid / "T2.nii.gz")
        if masks:
            write_nifti(Volume(mask, AFFINE), root / sid / "mask.nii.gz")
        subjects.append(Subject(sid, splits[i], {"T1": f"{sid}/T1.nii.gz", "T2": f"{sid}/T2.nii.gz"},
                                mask=f"{sid}/mask.nii.gz" if masks else None))
    ds = Dataset(root, subjects)
    ds.save()
    return ds


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("slices"))


def test_items_pair_the_same_slice_of_the_same_subject(data):
    ds = PairedSliceDataset(data, "train")
    assert len(ds) == 3 * len(BRAIN_SLICES)
    assert ds.subject_ids == ["sub-0", "sub-1", "sub-2"]
    item = ds[7]
    assert item["input"].shape == (1, 20, 24) and item["target"].shape == (1, 20, 24)
    assert item["mask"].shape == (1, 20, 24)
    assert item["input"].dtype == torch.float32
    sid, k = item["subject"], item["index"]
    assert (sid, k) == ("sub-1", 3)
    expected = normalise(_t1(1), robust_range(_t1(1)))[:, :, k]
    np.testing.assert_allclose(item["input"][0].numpy(), expected, atol=1e-6)
    torch.testing.assert_close(item["target"], item["input"], atol=1e-5, rtol=0)
    assert item["input"].min() >= -1 and item["input"].max() <= 1
    # Another slice really is another image.
    assert not torch.allclose(ds[8]["input"], item["input"])


def test_nearly_empty_slices_are_skipped(data):
    ds = PairedSliceDataset(data, "train")
    assert sorted({ds[n]["index"] for n in range(len(ds))}) == list(BRAIN_SLICES)
    # With a threshold above the brain's share of a slice (12 x 18 of 20 x 24 = 45 %), nothing is left.
    with pytest.raises(DatasetError, match="no slice .* foreground of at least 50%"):
        PairedSliceDataset(data, "train", min_foreground=0.5)
    assert len(PairedSliceDataset(data, "train", min_foreground=0.0)) == 3 * SHAPE[2]


def test_without_a_mask_the_foreground_comes_from_the_images(tmp_path):
    ds = PairedSliceDataset(_write(tmp_path, masks=False), "train")
    assert len(ds) == 3 * len(BRAIN_SLICES)
    mask = ds[0]["mask"][0]
    assert mask[4:16, 3:21].all() and mask.sum() == 12 * 18


def test_slices_are_padded_to_the_size_multiple_with_background(data):
    ds = PairedSliceDataset(data, "train", size_multiple=16)
    item = ds[0]
    assert ds.size == (32, 32)
    assert item["input"].shape == (1, 32, 32)
    # 20 rows padded by 6 above and below, 24 columns by 4 left and right.
    assert (item["input"][:, :6] == -1).all() and (item["input"][:, 26:] == -1).all()
    assert (item["mask"][:, :, :4] == 0).all()
    core = PairedSliceDataset(data, "train")[0]["input"]
    assert torch.equal(item["input"][:, 6:26, 4:28], core)


def test_fixed_size_pads_or_crops(data):
    assert PairedSliceDataset(data, "train", size=(32, 40))[0]["input"].shape == (1, 32, 40)
    cropped = PairedSliceDataset(data, "train", size=(16, 16))
    full = PairedSliceDataset(data, "train")[0]["input"]
    assert torch.equal(cropped[0]["input"], full[:, 2:18, 4:20])  # centred crop
    with pytest.raises(ValueError, match="multiple of size_multiple=8"):
        PairedSliceDataset(data, "train", size=(20, 24), size_multiple=8)


def test_augmentation_moves_input_target_and_mask_together(data):
    torch.manual_seed(0)
    ds = PairedSliceDataset(data, "train", size=(24, 24), augment=True)
    plain = PairedSliceDataset(data, "train", size=(24, 24))[4]
    seen = set()
    for _ in range(40):
        item = ds[4]
        torch.testing.assert_close(item["target"], item["input"], atol=1e-5, rtol=0)
        # Brain voxels stay brain voxels: the mask follows the image.
        assert ((item["input"] > -1) <= (item["mask"] > 0)).all()
        seen.add(item["input"].numpy().tobytes())
        variants = [torch.rot90(torch.flip(plain["input"], f), k, (-2, -1)) if f else
                    torch.rot90(plain["input"], k, (-2, -1)) for f in ([], [-1], [-2], [-2, -1]) for k in range(4)]
        assert any(torch.equal(item["input"], v) for v in variants)
    assert len(seen) >= 4  # flips and rotations really happen


@pytest.mark.parametrize("permute", [False, True])
def test_lr_augmentation_flips_left_right_only(tmp_path, permute):
    """augment="lr" keeps the anatomy's orientation: the only change is a flip along the patient's left-right
    axis, read from the affine (rows for RAS data; columns when the voxel axes i and j are swapped)."""
    ds = _write(tmp_path)
    if permute:  # the same images with i and j swapped and an affine that says so: LR runs along j
        swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]], float)
        for s in ds.subjects:
            for rel in [*s.images.values(), s.mask]:
                path = ds.path(rel)
                write_nifti(Volume(np.ascontiguousarray(load(path).data.transpose(1, 0, 2)), swap), path)
    lr_dim = -1 if permute else -2
    torch.manual_seed(0)
    aug = PairedSliceDataset(ds, "train", size=(24, 24), augment="lr")
    plain = PairedSliceDataset(ds, "train", size=(24, 24))[4]["input"]
    assert not torch.equal(plain, torch.flip(plain, [lr_dim]))  # the test image is not symmetric
    seen = set()
    for _ in range(30):
        item = aug[4]
        torch.testing.assert_close(item["target"], item["input"], atol=1e-5, rtol=0)
        assert torch.equal(item["input"], plain) or torch.equal(item["input"], torch.flip(plain, [lr_dim]))
        seen.add(item["input"].numpy().tobytes())
    assert len(seen) == 2
    with pytest.raises(MedtransError, match="augmentation"):
        PairedSliceDataset(ds, "train", augment="rotate")


def test_cache_off_gives_the_same_items(data):
    a = PairedSliceDataset(data, "train", cache=True)
    b = PairedSliceDataset(data, "train", cache=False)
    assert len(a) == len(b)
    for n in (0, 7, len(a) - 1):
        assert torch.equal(a[n]["input"], b[n]["input"]) and torch.equal(a[n]["target"], b[n]["target"])


def test_normalisation_statistics_are_medians_of_the_target_ranges(data):
    ds = PairedSliceDataset(data, "train")
    his = [robust_range(2.0 * _t1(i) * (i + 1)).hi for i in range(3)]
    stats = ds.normalisation
    assert stats["scheme"] == "percentile"
    assert (stats["lower_pct"], stats["upper_pct"]) == (0.5, 99.5)
    assert stats["outputs"]["T2"]["hi"] == pytest.approx(float(np.median(his)), rel=1e-6)
    assert stats["outputs"]["T2"]["lo"] == 0.0
    assert set(stats["inputs"]) == {"T1"}


def test_dataset_target_normalisation_uses_one_range_for_all_targets(data):
    ds = PairedSliceDataset(data, "train", target_norm="dataset")
    hi = ds.normalisation["outputs"]["T2"]["hi"]
    assert ds.normalisation["targets"] == "dataset"
    # the median upper percentile with headroom, so that bright targets above it are not clipped
    median_hi = float(np.median([robust_range(2.0 * _t1(i) * (i + 1)).hi for i in range(3)]))
    assert hi == pytest.approx(TARGET_HEADROOM * median_hi, rel=1e-6)
    assert ds.normalisation["target_headroom"] == TARGET_HEADROOM
    assert PairedSliceDataset(data, "train").normalisation["targets"] == "volume"
    for n in (0, 7, 13):  # one slice of each subject: T2 = 2 (i + 1) T1
        item = ds[n]
        i = int(item["subject"][-1])
        t2 = 2.0 * _t1(i)[:, :, item["index"]] * (i + 1)
        np.testing.assert_allclose(item["target"][0].numpy(), np.clip(t2 / hi * 2 - 1, -1, 1), atol=1e-5)
        # Inputs keep their per-volume normalisation.
        np.testing.assert_allclose(item["input"][0].numpy(), normalise(_t1(i), robust_range(_t1(i)))[:, :, item["index"]],
                                   atol=1e-6)
    # A validation set takes the training set's ranges.
    val = PairedSliceDataset(data, "val", target_norm=ds.normalisation["outputs"])
    assert val.normalisation["outputs"] == ds.normalisation["outputs"]
    with pytest.raises(ValueError, match='"target_norm" needs'):
        PairedSliceDataset(data, "val", target_norm={"T1": {"lo": 0, "hi": 1}})
    with pytest.raises(MedtransError, match="unknown target normalisation 'subject'"):
        PairedSliceDataset(data, "val", target_norm="subject")


def test_loads_from_a_folder_and_reports_bad_input(data, tmp_path):
    assert len(PairedSliceDataset(data.root, "val")) == len(BRAIN_SLICES)
    with pytest.raises(DatasetError, match="sub-0 has no FLAIR image"):
        PairedSliceDataset(data, "train", outputs=("FLAIR",))
    with pytest.raises(DatasetError, match="split 'test' has no subjects"):
        PairedSliceDataset(data, "test")
    bad = _write(tmp_path / "bad", t2_shape=(20, 24, 9))
    with pytest.raises(GeometryMismatchError, match="T2.nii.gz: subject sub-0: T2 has shape"):
        PairedSliceDataset(bad, "train")
    with pytest.raises(ValueError, match='"axis"'):
        PairedSliceDataset(data, "train", axis=3)


def test_other_axes_slice_the_other_way(data):
    ds = PairedSliceDataset(data, "train", axis=0, min_foreground=0.0)
    assert len(ds) == 3 * SHAPE[0]
    assert ds[0]["input"].shape == (1, 24, 10)


def test_unpaired_items_take_targets_from_other_subjects(data):
    torch.manual_seed(0)
    ds = UnpairedSliceDataset(data, "train")
    assert len(ds) == 3 * len(BRAIN_SLICES)
    for n in range(len(ds)):
        item = ds[n]
        assert item["subject"] != item["target_subject"]
        assert item["input"].shape == item["target"].shape == (1, 20, 24)
    disjoint = UnpairedSliceDataset(data, "train", disjoint=True)
    sources = {disjoint[n]["subject"] for n in range(len(disjoint))}
    targets = {disjoint[n]["target_subject"] for n in range(len(disjoint))}
    assert sources == {"sub-0", "sub-1"} and targets == {"sub-2"}
