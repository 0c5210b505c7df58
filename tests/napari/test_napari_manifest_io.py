"""The npe2 manifest, reader, writers, sample data and the layer geometry convention (no viewer needed)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml

import napari_medtrans
from napari_medtrans._napari._layers import (
    WORLD_FROM_RAS,
    display_axes,
    layer_to_volume,
    volume_layer_data,
    world_to_index,
)
from napari_medtrans._napari._reader import get_reader
from napari_medtrans._napari._sample import make_phantom_sample
from napari_medtrans._napari._writer import write_dicom_layer, write_nifti_layer
from napari_medtrans.core.io import load, write_nifti
from napari_medtrans.core.io.dicom_write import write_dicom_series
from napari_medtrans.phantom import make_subject
from napari_medtrans.core.volume import Volume

MANIFEST = Path(napari_medtrans.__file__).parent / "napari.yaml"
PYTHON_NAMES = [c["python_name"] for c in yaml.safe_load(MANIFEST.read_text())["contributions"]["commands"]]


def test_npe2_validate_passes():
    npe2 = Path(sys.executable).parent / "npe2"
    proc = subprocess.run([str(npe2), "validate", "napari-medtrans"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("python_name", PYTHON_NAMES)
def test_every_manifest_python_name_imports(python_name):
    module, _, attr = python_name.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_manifest_offers_reader_writers_sample_and_widgets():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-medtrans")
    contrib = manifest.contributions
    assert contrib.readers[0].accepts_directories
    assert {w.display_name for w in contrib.widgets} == {"Translate", "Inspect", "Export", "Segment"}
    assert [s.key for s in contrib.sample_data] == ["phantom"]
    assert {tuple(w.filename_extensions) for w in contrib.writers} == {(".nii.gz", ".nii"), (".dcm",)}


def make_volume(direction=np.eye(3), shape=(20, 16, 6), spacing=(1.2, 0.9, 3.0)) -> Volume:
    aff = np.eye(4)
    aff[:3, :3] = direction @ np.diag(spacing)
    aff[:3, 3] = (-10.0, 14.0, -7.0)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(data, aff, modality="T1")


ORIENTATIONS = {
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "sagittal": np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0.0]]),
    "oblique": np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1.0]]),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_layers_place_voxels_at_their_patient_position(name):
    from napari.layers import Image

    vol = make_volume(ORIENTATIONS[name])
    data, kw, kind = volume_layer_data(vol, "t1")
    layer = Image(data, **kw)
    perm = display_axes(vol.affine)
    rng = np.random.default_rng(0)
    for idx in rng.integers(0, vol.shape, size=(5, 3)):
        napari_index = [idx[a] for a in perm]
        assert layer.data[tuple(napari_index)] == vol.data[tuple(idx)]  # a view, same voxel
        world = layer.data_to_world(napari_index)
        expected = WORLD_FROM_RAS @ vol.affine @ np.r_[idx, 1.0]
        np.testing.assert_allclose(world, expected[:3], atol=1e-6)
        np.testing.assert_allclose(world_to_index(vol, world), idx, atol=1e-6)
    back = layer_to_volume(layer)
    assert back.data.base is not None or back.data is vol.data  # no copy of the voxels
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-9)
    assert back.modality == "T1" and kw["metadata"]["volume"] is vol


def test_axial_volumes_slide_along_superior_and_show_anterior_up():
    perm = display_axes(make_volume(ORIENTATIONS["RAS"]).affine)
    assert perm == (2, 1, 0)  # k (S) on the slider; rows j (A, shown with P downwards), columns i (R)
    data, kw, _ = volume_layer_data(make_volume(), "t1")
    assert np.diag(kw["affine"])[:3].tolist() == [3.0, -0.9, -1.2]  # S up the slider, A up the screen, R left


def test_synthetic_layers_are_named_and_flagged():
    syn = make_volume().derive(make_volume().data, modality="T2", synthetic=True)
    _, kw, _ = volume_layer_data(syn, "T2 from T1")
    assert kw["name"] == "SYNTHETIC T2 from T1" and kw["metadata"]["synthetic"] is True


def test_reader_claims_only_what_it_can_read(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 200)
    for path in ("notes.txt", "empty", "fake.dcm", "missing.nii.gz"):
        assert get_reader(str(tmp_path / path)) is None
    assert get_reader([str(tmp_path / "a.nii"), str(tmp_path / "b.nii")]) is None


def test_reader_opens_nifti_labels_and_dicom_series(tmp_path):
    subject = make_subject(4, shape=(24, 24, 8))
    write_nifti(subject.images["T1"], tmp_path / "sub_T1w.nii.gz")
    write_nifti(subject.labels, tmp_path / "sub_labels.nii.gz")
    write_dicom_series(subject.images["T2"], tmp_path / "dicom", series_description="T2 AX")
    write_dicom_series(subject.images["FLAIR"], tmp_path / "dicom", series_description="FLAIR AX", series_number=2)

    (t1,) = get_reader(str(tmp_path / "sub_T1w.nii.gz"))(str(tmp_path / "sub_T1w.nii.gz"))
    assert t1[2] == "image" and t1[1]["name"] == "sub_T1w" and t1[1]["metadata"]["modality"] == "T1"
    (labels,) = get_reader(str(tmp_path / "sub_labels.nii.gz"))(str(tmp_path / "sub_labels.nii.gz"))
    assert labels[2] == "labels" and labels[0].dtype == np.int32
    series = get_reader(str(tmp_path / "dicom"))(str(tmp_path / "dicom"))
    assert [s[1]["name"] for s in series] == ["T2 AX", "FLAIR AX"]
    np.testing.assert_allclose(series[0][1]["affine"], t1[1]["affine"], atol=1e-4)  # same place in the world
    one_file = next((tmp_path / "dicom").glob("S002_*.dcm"))
    (flair,) = get_reader(str(one_file))(str(one_file))
    assert flair[1]["name"] == "FLAIR AX" and flair[0].shape == series[1][0].shape


def test_writers_keep_geometry_and_synthetic_mark(tmp_path):
    from napari.layers import Image

    vol = make_volume(ORIENTATIONS["oblique"])
    syn = vol.derive(vol.data * 0.5 + 1.0, modality="T2", synthetic=True, provenance={"method": "unet"})
    data, kw, _ = volume_layer_data(syn, "T2")
    layer = Image(data, **kw)
    data, attributes, _ = layer.as_layer_data_tuple()
    (nii,) = write_nifti_layer(str(tmp_path / "syn.nii.gz"), data, attributes)
    back = load(nii)
    assert back.synthetic and back.modality == "T2"
    np.testing.assert_allclose(back.affine, syn.affine, atol=1e-5)
    np.testing.assert_allclose(back.data, syn.data)
    (folder,) = write_dicom_layer(str(tmp_path / "syn.dcm"), data, attributes)
    assert Path(folder) == tmp_path / "syn"
    ds = pydicom.dcmread(next(Path(folder).glob("*.dcm")))
    assert ds.SyntheticData == "YES" and ds.SeriesDescription.startswith("SYNTHETIC")
    np.testing.assert_allclose(load(folder).affine, syn.affine, atol=1e-4)

    saved = layer.save(str(tmp_path / "via_napari.nii.gz"), plugin="napari-medtrans")
    np.testing.assert_allclose(load(saved[0]).affine, syn.affine, atol=1e-5)


def test_sample_is_a_coregistered_phantom_subject():
    layers = make_phantom_sample(shape=(24, 24, 12))
    names = [kw["name"] for _d, kw, _t in layers]
    assert names == ["T1 phantom-0", "T2 phantom-0", "FLAIR phantom-0", "labels phantom-0"]
    assert [t for _d, _kw, t in layers] == ["image", "image", "image", "labels"]
    for _d, kw, _t in layers[1:]:
        np.testing.assert_array_equal(kw["affine"], layers[0][1]["affine"])
    assert set(np.unique(layers[3][0])) > {0, 1}
