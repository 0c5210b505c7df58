"""`medtrans segment-eval`: the Table III protocol from the command line (a tiny random SAM2 stands in for the
real models, whose weights are not downloaded in tests)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("sam2")
pytest.importorskip("torch")

from napari_medtrans.cli import build_parser, main  # noqa: E402
from napari_medtrans.segment import Segmenter  # noqa: E402
from napari_medtrans.segment._tiny import tiny_sam2  # noqa: E402

SHAPE = ["32", "32", "6"]


# One torch thread for the whole module (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_models(monkeypatch):
    built = []

    def from_name(cls, name="medsam2", **kwargs):
        built.append((name, kwargs))
        return cls(tiny_sam2(64), name=name)

    monkeypatch.setattr(Segmenter, "from_name", classmethod(from_name))
    return built


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_listed_in_medtrans_help():
    assert "segment-eval" in build_parser().format_help()


def test_phantom_run_prints_table_iii_and_writes_csv_and_masks(tmp_path, tiny_models, capsys):
    out_csv = tmp_path / "scores.csv"
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--model", "medsam2", "--model",
               "sam2.1_hiera_tiny", "--csv", str(out_csv), "--masks", str(tmp_path / "masks"), "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    from napari_medtrans.phantom import make_subject

    truth = make_subject(1, shape=tuple(int(x) for x in SHAPE), tumour=True, contrasts=("T1",)).labels.data
    n_slices = int(np.isin(truth, (4, 5, 6)).any(axis=(0, 1)).sum())
    assert n_slices >= 3
    for piece in ("T1 (source)", "T2 (real)", "mIoU (per slice)", "Dice (3D)", "medsam2", "sam2.1_hiera_tiny",
                  "T1 (source) vs T2 (real)", f"{n_slices} slices hold the object; labels: 4 5 6"):
        assert piece in text
    assert [n for n, _ in tiny_models] == ["medsam2", "sam2.1_hiera_tiny"]
    rows = _rows(out_csv)
    assert len(rows) == 2 * 3  # two models x (two images + one pair)
    assert {r["labels"] for r in rows} == {"4 5 6"} and {r["mode"] for r in rows} == {"slices"}
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0
    masks = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert masks == ["medsam2_T1_source.nii.gz", "medsam2_T2_real.nii.gz",
                     "sam2.1_hiera_tiny_T1_source.nii.gz", "sam2.1_hiera_tiny_T2_real.nii.gz"]


def test_subject_folder_with_a_synthetic_image_in_propagate_mode(tmp_path, tiny_models, capsys):
    from napari_medtrans.core import io
    from napari_medtrans.phantom import make_subject

    subject = make_subject(2, shape=(32, 32, 6), tumour=True, contrasts=("T1", "T2"))
    d = tmp_path / "sub-000"
    d.mkdir()
    io.save(subject.images["T1"], d / "T1.nii.gz")
    io.save(subject.images["T2"], d / "T2.nii.gz")
    io.save(subject.labels, d / "labels.nii.gz")
    syn = subject.images["T2"].derive(subject.images["T2"].data * 0.9 + 5, synthetic=True)
    io.save(syn, tmp_path / "t2_synthetic.nii.gz")
    rc = main(["segment-eval", "--subject", str(d), "--synthetic", str(tmp_path / "t2_synthetic.nii.gz"),
               "--mode", "propagate", "--largest-component", "--csv", str(tmp_path / "s.csv")])
    assert rc == 0
    rows = _rows(tmp_path / "s.csv")
    images = [r["image"] for r in rows if r["reference"] == "ground truth"]
    assert len(images) == 3 and images[:2] == ["T1 (source)", "T2 (real)"] and "synthetic" in images[2]
    assert len(rows) == 3 + 3 and {r["mode"] for r in rows} == {"propagate"}
    assert "vs" in capsys.readouterr().out


def test_explicit_files_and_label_values(tmp_path, tiny_models):
    from napari_medtrans.core import io
    from napari_medtrans.core.volume import Volume

    affine = np.diag([2.0, 2.0, 4.0, 1.0])
    rng = np.random.default_rng(0)
    img = Volume(rng.random((32, 32, 8)).astype(np.float32) * 100, affine, modality="T2")
    lab = np.zeros((32, 32, 8), np.float32)
    lab[10:20, 12:18, 3:5] = 2
    io.save(img, tmp_path / "t2.nii.gz")
    io.save(Volume(lab, affine), tmp_path / "seg.nii.gz")
    rc = main(["segment-eval", "--target", str(tmp_path / "t2.nii.gz"), "--labels", str(tmp_path / "seg.nii.gz"),
               "--label", "2", "--margin", "1", "--window", "0", "100", "--csv", str(tmp_path / "x.csv")])
    assert rc == 0
    (row,) = _rows(tmp_path / "x.csv")
    assert row["labels"] == "2" and row["n_slices"] == "2"


def test_errors_are_readable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--model", "medsam2", "--csv",
               str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "medtrans weights import PATH --name medsam2_latest" in err
    # without --model and without weights the shipped segmenter is used (issue 23)
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--csv", str(tmp_path / "s.csv")])
    assert rc == 0 and "promptunet-phantom" in capsys.readouterr().out
    rc = main(["segment-eval", "--target", str(tmp_path / "t2.nii.gz")])
    assert rc == 2 and "give --labels" in capsys.readouterr().err
    rc = main(["segment-eval", "--phantom", "1", "--model", "medsam2", "--model", "sam2.1_hiera_tiny",
               "--weights", str(tmp_path / "w.pt")])
    assert rc == 2 and "exactly one --model" in capsys.readouterr().err


def _prompt_file(tmp_path, doc, name="prompts.json"):
    import json

    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_user_prompts_from_a_json_file(tmp_path, tiny_models, capsys):
    from napari_medtrans.phantom import make_subject
    from napari_medtrans.segment import SlicePrompt
    from napari_medtrans.segment.evaluate import evaluate_segmentation

    doc = {"comment": "two clicks and a box", "slices": [
        {"slice": 2, "points": [[20, 8, 1], [3, 3, 0]], "box": [14, 4, 28, 16]},
        {"slice": 4, "points": [[15, 15]]},
    ]}
    path = _prompt_file(tmp_path, doc)
    out_csv = tmp_path / "user.csv"
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--prompts", str(path), "--csv", str(out_csv),
               "--masks", str(tmp_path / "masks"), "--model", "medsam2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "prompts from the user" in text and f"prompts: user, 2 slice(s) from {path}" in text
    rows = _rows(out_csv)
    assert len(rows) == 3 and {r["prompts"] for r in rows} == {"user"}

    # the scores are those of the file's prompts, given to the model as they are
    subject = make_subject(1, shape=(32, 32, 6), tumour=True, contrasts=("T1", "T2"))
    user = [SlicePrompt(2, points=[(20, 8), (3, 3)], labels=[1, 0], box=(14, 4, 28, 16)),
            SlicePrompt(4, points=[(15, 15)], labels=[1])]
    expected = evaluate_segmentation({"T1 (source)": subject.images["T1"], "T2 (real)": subject.images["T2"]},
                                     subject.labels, Segmenter(tiny_sam2(64)), labels=[4, 5, 6], prompts=user)
    for row, score in zip(rows, expected.images):
        assert row["image"] == score.image and float(row["dice"]) == pytest.approx(score.dice, abs=1e-6)
    from napari_medtrans.core import io

    mask = io.load(tmp_path / "masks" / "medsam2_T2_real.nii.gz")
    np.testing.assert_array_equal(mask.data > 0, expected.results["T2 (real)"].mask)

    # without --prompts the same run says "ground truth"
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--csv", str(tmp_path / "gt.csv")])
    assert rc == 0 and {r["prompts"] for r in _rows(tmp_path / "gt.csv")} == {"ground truth"}
    assert "prompts from the ground truth" in capsys.readouterr().out


@pytest.mark.parametrize("doc, message", [
    ('{"slices": [{"slice": 2, "points": [[20, 8, 1]]},]}', "not valid JSON"),
    ({"slices": [{"slice": 6, "points": [[20, 8]]}]}, r"slices\[0\]: slice 6 is outside the image's 6 axial slices"),
    ({"slices": [{"slice": 2, "points": [[20, 8], [40, 3, 1]]}]},
     r"slices\[0\]\.points\[1\] \(x=40, y=3\) lies outside the 32 x 32 frame"),
    ({"slices": [{"slice": 2, "box": [1, 1, 5, 32]}]}, r"slices\[0\]\.box \[1, 1, 5, 32\] lies outside"),
    ({"slices": [{"slice": 2, "points": [[20, 8, 2]]}]}, "label must be 1 .positive. or 0 .negative."),
    ({"slices": [{"slice": 2, "points": [[20, 8, 0]]}]}, "only negative points"),
    ({"slices": [{"slice": 2, "points": [[20, 8]]}, {"slice": 2, "box": [1, 1, 5, 5]}]}, "both on slice 2"),
    ({"slices": [{"slice": 2, "points": [[20, 8]]}], "axis": 2}, r"unknown key\(s\) \['axis'\]"),
    ({"slices": []}, '"slices" must be a non-empty list'),
    ([[20, 8]], 'expected an object with a "slices" list'),
])
def test_bad_prompt_files_name_the_file_and_the_problem(tmp_path, tiny_models, capsys, doc, message):
    import re

    path = _prompt_file(tmp_path, doc)
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--prompts", str(path),
               "--csv", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"medtrans segment-eval: error: {path}: ")
    assert re.search(message, err), err
    assert tiny_models == [] and not (tmp_path / "s.csv").exists(), "nothing runs with a bad prompt file"


def test_prompt_file_missing_or_with_a_margin(tmp_path, tiny_models, capsys):
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--prompts", str(tmp_path / "nope.json")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path / 'nope.json'}: cannot read the prompt file" in err
    path = _prompt_file(tmp_path, {"slices": [{"slice": 2, "points": [[20, 8]]}]})
    rc = main(["segment-eval", "--phantom", "1", "--shape", *SHAPE, "--prompts", str(path), "--margin", "2"])
    assert rc == 2 and "--margin grows the ground-truth boxes" in capsys.readouterr().err


def test_help_documents_the_prompt_file_and_its_coordinates():
    parser = build_parser()
    sub = next(a for a in parser._actions if getattr(a, "choices", None) and "segment-eval" in a.choices)
    text = sub.choices["segment-eval"].format_help()
    assert "--prompts FILE.json" in text and "x column" in text and "[x, y, label]" in text
    assert "from the most inferior" in text and '"slices"' in text


def test_a_brats_label_map_runs_the_table_iii_regions_directly(tmp_path, tiny_models, capsys):
    """Issue 24 item 3: a BraTS 2021 seg (1 necrotic core, 2 oedema, 4 enhancing) with --label-scheme brats2021:
    --region whole / core / enhancing pick the same voxels as BraTS's WT (1 2 4), TC (1 4) and ET (4)."""
    from napari_medtrans.core import io
    from napari_medtrans.core.volume import Volume

    affine = np.diag([2.0, 2.0, 4.0, 1.0])
    rng = np.random.default_rng(0)
    io.save(Volume(rng.random((32, 32, 8)).astype(np.float32) * 100, affine, modality="T2"), tmp_path / "t2.nii.gz")
    seg = np.zeros((32, 32, 8), np.float32)
    seg[8:24, 8:24, 2:6] = 2
    seg[11:21, 11:21, 3:5] = 4
    seg[14:18, 14:18, 3:5] = 1
    io.save(Volume(seg, affine), tmp_path / "seg.nii.gz")
    sizes = {}
    for region, brats in (("whole", (1, 2, 4)), ("core", (1, 4)), ("enhancing", (4,))):
        out = tmp_path / f"{region}.csv"
        assert main(["segment-eval", "--target", str(tmp_path / "t2.nii.gz"), "--labels", str(tmp_path / "seg.nii.gz"),
                     "--label-scheme", "brats2021", "--region", region, "--csv", str(out)]) == 0
        (row,) = _rows(out)
        sizes[region] = row["labels"]
        assert int(row["n_slices"]) == len({k for k in range(8) if np.isin(seg[..., k], brats).any()})
    assert sizes == {"whole": "4 5 6", "core": "5 6", "enhancing": "5"}
    capsys.readouterr()
    assert main(["segment-eval", "--target", str(tmp_path / "t2.nii.gz"), "--labels", str(tmp_path / "seg.nii.gz"),
                 "--region", "core", "--label", "1"]) == 2
    assert "not both" in capsys.readouterr().err
