"""No silent wrong results (issue 18, items 1, 3, 4, 5, 6): a volume's contrast comes from its own evidence and a
model refuses the wrong one; provenance travels with a synthetic NIfTI whatever it is called; nothing is written
over an input; a broken model or input gives an error, never a plausible wrong image."""

import json
import time

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_medtrans.cli import main
from napari_medtrans.core import io
from napari_medtrans.core.engine import translate_volume
from napari_medtrans.core.errors import InputModalityError, MedtransError
from napari_medtrans.core.io.dicom import guess_modality
from napari_medtrans.core.volume import Volume
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.translators import create_translator
from napari_medtrans.translators.checkpoint import read_checkpoint_metadata, save_checkpoint

SHAPE = (32, 32, 12)
NORM = {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5, "outputs": {"T2": {"lo": 0.0, "hi": 2.0}}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, 1, seed=5, shape=SHAPE, dicom=True, split=(1.0, 0.0, 0.0))
    return root / "sub-000"


def _unet(path, inputs=("T1",), outputs=("T2",), norm=NORM):
    torch.manual_seed(0)
    net = create_translator("unet", inputs=inputs, outputs=outputs, width=4, depth=2)
    save_checkpoint(net, path, normalisation=norm)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _unet(tmp_path_factory.mktemp("model") / "unet.safetensors")


def _translate(*args):
    return main(["translate", *map(str, args), "--device", "cpu"])


# -- 1. the detected modality is used ----------------------------------------------------------------------------
@pytest.mark.parametrize("contrast", ["T2", "FLAIR", "PD"])
def test_a_t1_model_refuses_another_contrast_and_writes_nothing(data, model, tmp_path, capsys, contrast):
    out = tmp_path / "x.nii.gz"
    assert _translate(data / f"{contrast}.nii.gz", "--model", model, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{contrast}.nii.gz" in err and contrast in err and "T1" in err and "--override-modality" in err
    assert not out.exists()


def test_a_dicom_t2_series_is_refused_by_a_t1_model(data, model, tmp_path, capsys):
    assert io.load(data / "dicom" / "T2").modality_evidence == "dicom"
    assert _translate(data / "dicom" / "T2", "--model", model, "--out", tmp_path / "x.nii.gz") == 2
    assert "is T2" in capsys.readouterr().err


def test_a_flair_model_refuses_t1_and_the_same_file_twice_is_refused(data, tmp_path, capsys):
    flair_model = _unet(tmp_path / "flair.safetensors", inputs=("FLAIR",))
    assert _translate(data / "T1.nii.gz", "--model", flair_model, "--out", tmp_path / "x.nii.gz") == 2
    assert "FLAIR" in capsys.readouterr().err
    two = _unet(tmp_path / "two.safetensors", inputs=("T1", "T2"), outputs=("T1c",),
                norm={**NORM, "outputs": {"T1c": {"lo": 0.0, "hi": 2.0}}})
    t1 = data / "T1.nii.gz"
    assert _translate(f"T1={t1}", f"T2={t1}", "--model", two, "--out", tmp_path / "x.nii.gz") == 2
    err = capsys.readouterr().err
    assert "T1.nii.gz" in err and ("same file" in err or "is T1" in err)
    assert not (tmp_path / "x.nii.gz").exists()


def test_reverse_of_a_two_way_model_refuses_the_saved_source(data, tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "hifisyn.safetensors"
    net = create_translator("hifi-syn", preset="cpu", width=4, disc_width=4, attr_dim=4, n_res=1)
    save_checkpoint(net, path, normalisation={"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                                              "inputs": {"T1": {"lo": 0.0, "hi": 1.5}},
                                              "outputs": {"T2": {"lo": 0.0, "hi": 2.0}}})
    assert _translate(data / "T1.nii.gz", "--model", path, "--reverse", "--out", tmp_path / "x.nii.gz") == 2
    assert "expects T2" in capsys.readouterr().err


def test_override_is_explicit_and_recorded(data, model, tmp_path, capsys):
    out = tmp_path / "x.nii.gz"
    assert _translate(data / "T2.nii.gz", "--model", model, "--out", out, "--override-modality") == 0
    text = capsys.readouterr()
    assert "override" in (text.out + text.err).lower()
    prov = io.load(out).provenance
    [record] = prov["modality_override"]
    assert (record["input"], record["labelled"]) == ("T1", "T2") and record["evidence"] in ("header", "filename")


def test_unknown_contrast_is_taken_as_the_models_input_and_said(data, model, tmp_path, capsys):
    src = io.load(data / "T1.nii.gz")
    anon = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(src.data, src.affine), str(anon))
    assert io.load(anon).modality is None
    assert _translate(anon, "--model", model, "--out", tmp_path / "x.nii.gz") == 0
    assert "contrast unknown" in capsys.readouterr().err
    assert io.load(tmp_path / "x.nii.gz").provenance["input_modality_evidence"] == [None]


def test_modality_evidence_order_header_sidecar_dicom_timing(tmp_path):
    data = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32)
    scan = tmp_path / "scan_T1.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(scan))
    assert (io.load(scan).modality, io.load(scan).modality_evidence) == ("T1", "filename")
    (tmp_path / "scan_T1.json").write_text(json.dumps({"SeriesDescription": "AX T2 FSE"}))
    assert (io.load(scan).modality, io.load(scan).modality_evidence) == ("T2", "sidecar")
    (tmp_path / "scan_T1.json").write_text(json.dumps({"RepetitionTime": 9.0, "EchoTime": 0.12,
                                                       "InversionTime": 2.5}))
    assert io.load(scan).modality == "FLAIR"
    img = nib.Nifti1Image(data, np.eye(4))
    img.header["descrip"] = b"PD"
    nib.save(img, str(scan))
    assert (io.load(scan).modality, io.load(scan).modality_evidence) == ("PD", "header")
    assert (io.load(scan, modality="T1").modality, io.load(scan, modality="T1").modality_evidence) == ("T1", "override")
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SeriesDescription, ds.RepetitionTime, ds.EchoTime = "ax 3mm", 520, 12
    assert guess_modality(ds) == "T1"
    ds.RepetitionTime, ds.EchoTime = 4200, 95
    assert guess_modality(ds) == "T2"
    ds.RepetitionTime, ds.EchoTime = 2400, 60  # between the rules: no guess
    assert guess_modality(ds) is None


def test_engine_refuses_a_mislabelled_volume_unless_overridden(model):
    from napari_medtrans.translators.checkpoint import load_translator

    tr = load_translator(model)
    vol = Volume(np.random.default_rng(0).random((16, 16, 3)).astype(np.float32) + 1, np.eye(4), modality="T2",
                 modality_evidence="header")
    with pytest.raises(InputModalityError, match="T2.*T1"):
        translate_volume(vol, tr, device="cpu")
    with pytest.raises(InputModalityError):
        translate_volume({"T1": vol}, tr, device="cpu")  # a dict key is not evidence
    res = translate_volume(vol, tr, device="cpu", override_modality=True)
    assert res.volume.provenance["modality_override"][0]["labelled"] == "T2"


# -- 3, 4. the header names the contrast; provenance travels -----------------------------------------------------
def test_provenance_survives_a_rename_and_reaches_export(data, model, tmp_path, capsys):
    out = tmp_path / "synth_from_T1.nii.gz"
    assert _translate(data / "T1.nii.gz", "--model", model, "--out", out) == 0
    renamed = tmp_path / "whatever_PD.nii.gz"
    out.rename(renamed)
    vol = io.load(renamed)
    assert vol.synthetic and vol.modality == "T2" and vol.modality_evidence == "header"
    prov = vol.provenance
    assert prov["method"] == "unet"
    assert prov["checkpoint_sha256"] == read_checkpoint_metadata(model).sha256
    assert prov["checkpoint_name"] == model.name
    assert prov["input_modalities"] == ["T1"] and prov["inputs"] == [str(data / "T1.nii.gz")]
    assert prov["precision"] in ("fp32", "bf16") and "seed" in prov

    from napari_medtrans.core.io.dicom_export import derivation_description

    text = derivation_description(vol)
    assert prov["checkpoint_sha256"] in text and "SYNTHETIC T2" in text and "from T1" in text
    assert f"checkpoint file {model.name}" in text and f"seed {prov['seed']}" in text
    assert str(data) not in text  # no input path (it may name the patient)


def test_dicom_input_series_uids_and_patient_are_recorded(data, model, tmp_path):
    out = tmp_path / "x.nii.gz"
    assert _translate(data / "dicom" / "T1", "--model", model, "--out", out) == 0
    src = io.load(data / "dicom" / "T1")
    prov = io.load(out).provenance
    assert prov["input_series_uids"] == [src.source.series_instance_uid]
    assert prov["input_study_uid"] == src.source.study_instance_uid
    assert isinstance(prov["input_patient_sha256"], str) and len(prov["input_patient_sha256"]) == 64
    pid = str(src.source.dicom_datasets[0].PatientID)
    assert all(pid not in json.dumps(v) for k, v in prov.items() if k != "inputs")  # no identifier in clear


# -- 5. nothing is written over an input ---------------------------------------------------------------------------
def test_output_equal_to_input_is_refused_and_the_input_kept(data, model, tmp_path, capsys):
    t1 = tmp_path / "T1.nii.gz"
    t1.write_bytes((data / "T1.nii.gz").read_bytes())
    before = t1.read_bytes()
    assert _translate(t1, "--model", model, "--out", t1) == 2
    assert "input" in capsys.readouterr().err
    link = tmp_path / "link.nii.gz"
    link.symlink_to(t1)
    assert _translate(t1, "--model", model, "--out", link) == 2
    assert t1.read_bytes() == before and not io.load(t1).synthetic


def test_a_synthetic_volume_never_replaces_an_acquired_file(data, tmp_path):
    t2 = tmp_path / "T2.nii.gz"
    t2.write_bytes((data / "T2.nii.gz").read_bytes())
    acquired = io.load(t2)
    with pytest.raises(MedtransError, match="acquired"):
        io.write_nifti(acquired.derive(acquired.data * 0, synthetic=True), t2)
    assert not io.load(t2).synthetic


# -- 6. broken models and inputs give errors -------------------------------------------------------------------
def test_a_model_with_nan_weights_writes_nothing(data, tmp_path, capsys):
    net = create_translator("unet", inputs=("T1",), outputs=("T2",), width=4, depth=2)
    with torch.no_grad():
        next(iter(net.parameters())).fill_(float("nan"))
    path = tmp_path / "nan.safetensors"
    save_checkpoint(net, path, normalisation=NORM)
    out = tmp_path / "x.nii.gz"
    assert _translate(data / "T1.nii.gz", "--model", path, "--out", out) == 2
    assert "non-finite" in capsys.readouterr().err
    assert not out.exists()


def test_engine_refuses_non_finite_output(data):
    class NaNOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            from napari_medtrans.translators.base import TranslatorSpec

            self.spec = TranslatorSpec(method="nan", inputs=("T1",), outputs=("T2",))

        def translate(self, x, *, steps=None, generator=None):
            from napari_medtrans.translators.base import TranslationOutput

            return TranslationOutput(image=torch.full_like(x, float("nan")))

    with pytest.raises(MedtransError, match="non-finite"):
        translate_volume(io.load(data / "T1.nii.gz"), NaNOut(), device="cpu")


@pytest.mark.parametrize("key,value", [("depth", 1_000_000), ("width", 1_000_000), ("width", 64), ("width", -3)])
def test_crafted_metadata_fails_fast_before_building(model, tmp_path, capsys, key, value):
    from safetensors.torch import load_file, save_file

    from napari_medtrans.translators.checkpoint import _read_safetensors_header

    meta = dict(_read_safetensors_header(model)["__metadata__"])
    record = json.loads(meta["medtrans"])
    record["config"][key] = value
    meta["medtrans"] = json.dumps(record)
    bad = tmp_path / "crafted.safetensors"
    save_file(load_file(model), str(bad), metadata=meta)
    t0 = time.perf_counter()
    assert main(["info", str(bad)]) in (0, 2)  # info describes the file; it builds nothing
    capsys.readouterr()
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 2)).astype(np.float32), np.eye(4)), str(src))
    assert _translate(f"T1={src}", "--model", bad, "--out", tmp_path / "x.nii.gz", "--override-modality") == 2
    assert time.perf_counter() - t0 < 2.0
    err = capsys.readouterr().err
    assert "crafted.safetensors" in err and "Traceback" not in err and key in err


@pytest.mark.parametrize("fill", [0.0, 7.5])
def test_constant_volumes_are_refused(model, tmp_path, capsys, fill):
    src = tmp_path / "T1.nii.gz"
    nib.save(nib.Nifti1Image(np.full((16, 16, 4), fill, np.float32), np.eye(4)), str(src))
    assert _translate(src, "--model", model, "--out", tmp_path / "x.nii.gz") == 2
    assert "constant" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()


def test_info_says_how_a_synthetic_file_was_made_and_where_its_contrast_comes_from(data, model, tmp_path, capsys):
    out = tmp_path / "synth_from_T1.nii.gz"
    assert _translate(data / "T1.nii.gz", "--model", model, "--out", out) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "modality:    T2 (from the NIfTI header)" in text
    assert f"made by:     unet, checkpoint {model.name}" in text and f"from:        T1 {data / 'T1.nii.gz'}" in text


def test_convert_never_writes_over_its_input(data, tmp_path, capsys):
    t1 = tmp_path / "T1.nii.gz"
    t1.write_bytes((data / "T1.nii.gz").read_bytes())
    before = t1.read_bytes()
    assert main(["convert", str(t1), str(t1)]) == 2
    assert "input" in capsys.readouterr().err and t1.read_bytes() == before
    assert main(["convert", str(data / "dicom" / "T1"), str(data / "dicom" / "T1" / "x.nii.gz")]) == 2
    assert not (data / "dicom" / "T1" / "x.nii.gz").exists()


def test_a_synthetic_nifti_without_the_provenance_extension_still_loads_with_its_method(tmp_path):
    """A file written before provenance travelled in a header extension (or by a tool that only copied the
    description) says "SYNTHETIC T2 by unet": it loads as synthetic T2 made by unet (it raised NameError)."""
    import nibabel as nib
    import numpy as np

    from napari_medtrans.core import io

    img = nib.Nifti1Image(np.ones((4, 4, 3), np.float32), np.eye(4))
    img.header["descrip"] = b"SYNTHETIC T2 by unet"
    nib.save(img, str(tmp_path / "old_synth.nii.gz"))
    vol = io.load(tmp_path / "old_synth.nii.gz")
    assert vol.synthetic and vol.modality == "T2" and vol.provenance == {"method": "unet"}
