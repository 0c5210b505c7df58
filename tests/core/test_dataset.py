"""Dataset manifests: JSON and CSV, splits by subject, clear errors."""

import json

import pytest

from napari_medtrans.core.dataset import Dataset, DatasetError, Subject, assign_split, load_dataset
from napari_medtrans.core.errors import UnknownChoiceError


def test_json_round_trip_and_split(tmp_path):
    ds = Dataset(
        root=tmp_path,
        subjects=[
            Subject("a", "train", {"t1w": "a/T1.nii.gz", "T2": "a/T2.nii.gz"}, labels="a/l.nii.gz"),
            Subject("b", "test", {"T1": "b/T1.nii.gz", "T2": "b/dicom/T2"}),
        ],
        name="demo",
    )
    path = ds.save()
    back = load_dataset(tmp_path)
    assert path.name == "dataset.json"
    assert back.name == "demo"
    assert [s.id for s in back.split("train")] == ["a"]
    assert [s.id for s in back.split(["train", "test"])] == ["a", "b"]
    assert back.modalities == ["T1", "T2"]  # "t1w" normalised
    assert back.path("b/dicom/T2") == tmp_path / "b" / "dicom" / "T2"
    with pytest.raises(DatasetError, match="does not exist"):
        back.check_files()


def test_csv_manifest_assigns_stable_splits(tmp_path):
    rows = ["subject,T1,T2"] + [f"s{i},s{i}/t1.nii,s{i}/t2.nii" for i in range(40)]
    (tmp_path / "dataset.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "dataset.csv")
    splits = {s.id: s.split for s in ds.subjects}
    assert set(splits.values()) == {"train", "val", "test"}
    # the split of a subject depends on its id only, not on the other rows
    (tmp_path / "dataset.csv").write_text("\n".join([rows[0]] + rows[:0:-1]) + "\n")
    assert {s.id: s.split for s in load_dataset(tmp_path).subjects} == splits
    assert splits["s3"] == assign_split("s3")


def test_bad_manifests(tmp_path):
    with pytest.raises(DatasetError, match="no dataset.json"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"dataset\.json: malformed"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"subjects": [{"id": "x"}]}))
    with pytest.raises(DatasetError, match="needs 'id' and 'images'"):
        load_dataset(tmp_path)
    with pytest.raises(UnknownChoiceError, match="did you mean 'train'|Did you mean 'train'"):
        Dataset(root=tmp_path, subjects=[Subject("x", "trian", {"T1": "a"})])
    with pytest.raises(DatasetError, match="appears twice"):
        Dataset(root=tmp_path, subjects=[Subject("x", None, {"T1": "a"}), Subject("x", None, {"T1": "b"})])
