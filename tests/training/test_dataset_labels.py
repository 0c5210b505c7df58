"""Tissue labels in the slice datasets: aligned with the images under crop, pad and augmentation; missing labels
fail loudly; a HiFi-Syn step on such batches has a non-zero SGD term."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from napari_medtrans.core.dataset import Dataset, DatasetError, Subject
from napari_medtrans.core.errors import GeometryMismatchError
from napari_medtrans.core.io import write_nifti
from napari_medtrans.core.volume import Volume
from napari_medtrans.training.datasets import PairedSliceDataset, UnpairedSliceDataset
from napari_medtrans.training.recipes import get_recipe
from napari_medtrans.translators import create_translator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (20, 26, 6)  # not square, larger than the crops below
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
TOP = 4  # the largest label


def _labels(seed):
    """Random blocky labels 0..TOP: no symmetry, so any misalignment shows."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(SHAPE, np.float32)
    lab[2:18, 2:24] = rng.integers(1, TOP + 1, size=(8, 11, SHAPE[2])).repeat(2, 0).repeat(2, 1)
    return lab


def _write(root, n=3, labels=True, t1_scale=100.0, t2_scale=30.0):
    """Subjects whose T1 and T2 are the label map times a constant (so [-1, 1] images are labels / TOP * 2 - 1)."""
    subjects = []
    for i in range(n):
        sid = f"sub-{i}"
        lab = _labels(i)
        write_nifti(Volume(lab * t1_scale, AFFINE), root / sid / "T1.nii.gz")
        write_nifti(Volume(lab * t2_scale * (i + 1), AFFINE), root / sid / "T2.nii.gz")
        write_nifti(Volume(lab, AFFINE), root / sid / "labels.nii.gz")
        subjects.append(Subject(sid, "train", {"T1": f"{sid}/T1.nii.gz", "T2": f"{sid}/T2.nii.gz"},
                                labels=f"{sid}/labels.nii.gz" if labels else None))
    ds = Dataset(root, subjects, name="toy")
    ds.save()
    return ds


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("labelled"))


def _as_labels(img):
    """Invert image = labels / TOP * 2 - 1 (background and padding at -1 are label 0)."""
    return torch.round((img + 1) / 2 * TOP).long()


def test_labels_are_integer_slices_of_the_label_map(data):
    ds = PairedSliceDataset(data, "train", labels=True)
    item = ds[3]
    lab = item["labels"]
    assert lab.dtype == torch.int64 and lab.shape == item["input"].shape == (1, 20, 26)
    expected = _labels(int(item["subject"][-1]))[:, :, item["index"]]
    np.testing.assert_array_equal(lab[0].numpy(), expected.astype(np.int64))
    assert torch.equal(item["target_labels"], lab)
    # The construction holds: the images are the label map scaled.
    assert torch.equal(_as_labels(item["input"]), lab) and torch.equal(_as_labels(item["target"]), lab)
    # Off by default.
    assert "labels" not in PairedSliceDataset(data, "train")[3]
    assert "labels" not in UnpairedSliceDataset(data, "train")[3]


@pytest.mark.parametrize("size", [(16, 16), (16, 20), (32, 32), (24, 20)])
def test_unpaired_labels_follow_their_images_through_crop_pad_flip_rotate(data, size):
    torch.manual_seed(1)
    ds = UnpairedSliceDataset(data, "train", size=size, augment=True, labels=True)
    seen = set()
    for n in range(60):
        item = ds[n % len(ds)]
        for img, lab in ((item["input"], item["labels"]), (item["target"], item["target_labels"])):
            assert lab.shape == img.shape == (1, *size) and lab.dtype == torch.int64
            assert torch.equal(_as_labels(img), lab)
            assert set(lab.unique().tolist()) <= set(range(TOP + 1))  # never interpolated
        seen.add(item["labels"].numpy().tobytes())
    assert len(seen) > len(ds)  # random crops, flips and rotations really happened


def test_paired_labels_follow_their_images_under_augmentation(data):
    torch.manual_seed(2)
    ds = PairedSliceDataset(data, "train", size=(16, 16), augment=True, labels=True)
    plain = PairedSliceDataset(data, "train", size=(32, 32), labels=True)[5]
    for _ in range(30):
        item = ds[5]
        assert torch.equal(_as_labels(item["input"]), item["labels"])
        assert torch.equal(_as_labels(item["target"]), item["target_labels"])
    # Padding: labels are 0 where the image is padded with -1.
    assert torch.equal(_as_labels(plain["input"]), plain["labels"])
    assert (plain["labels"][:, :6] == 0).all() and (plain["input"][:, :6] == -1).all()


def test_uncached_items_carry_the_same_labels(data):
    a = UnpairedSliceDataset(data, "train", labels=True, cache=True)
    b = UnpairedSliceDataset(data, "train", labels=True, cache=False)
    for n in (0, 4, len(a) - 1):
        torch.manual_seed(n)
        x = a[n]
        torch.manual_seed(n)
        y = b[n]
        assert torch.equal(x["labels"], y["labels"]) and torch.equal(x["target_labels"], y["target_labels"])


def test_missing_or_bad_label_maps_are_named(tmp_path, data):
    bare = _write(tmp_path / "bare", labels=False)
    for cls in (PairedSliceDataset, UnpairedSliceDataset):
        with pytest.raises(DatasetError, match="subject sub-0 of dataset 'toy' has no label map"):
            cls(bare, "train", labels=True)
        assert len(cls(bare, "train")) > 0  # fine without labels
    odd = _write(tmp_path / "odd")
    write_nifti(Volume(_labels(1)[:, :, :5], AFFINE), odd.root / "sub-1" / "labels.nii.gz")
    with pytest.raises(GeometryMismatchError, match="labels.nii.gz: subject sub-1: label map has shape"):
        PairedSliceDataset(odd, "train", labels=True)
    write_nifti(Volume(_labels(1) + 0.5, AFFINE), odd.root / "sub-1" / "labels.nii.gz")
    with pytest.raises(DatasetError, match="subject sub-1: the label map holds non-integer values"):
        UnpairedSliceDataset(odd, "train", labels=True)


def test_hifisyn_step_on_dataset_batches_has_a_nonzero_sgd_term(data, step_ctx):
    torch.manual_seed(0)
    model = create_translator("hifi-syn", preset="cpu", width=8, disc_width=8, attr_dim=4).train()
    recipe = get_recipe("hifi-syn")
    assert recipe.needs_labels and recipe.unpaired
    parts = recipe.build(model)
    size = (16, 16)
    with_labels = next(iter(DataLoader(UnpairedSliceDataset(data, "train", size=size, augment=True, labels=True),
                                       batch_size=2)))
    assert with_labels["labels"].shape == (2, 1, *size) and with_labels["labels"].dtype == torch.int64
    row = recipe.training_step(with_labels, model, parts.modules, step_ctx(model, parts))
    assert torch.isfinite(row["loss"]) and float(row["g_sgd"]) > 0
    without = next(iter(DataLoader(UnpairedSliceDataset(data, "train", size=size), batch_size=2)))
    assert float(recipe.training_step(without, model, parts.modules, step_ctx(model, parts))["g_sgd"]) == 0.0
