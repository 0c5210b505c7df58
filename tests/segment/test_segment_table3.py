"""`medtrans table3` (EDTS-Trans Table III, issue 23) end to end on a tiny dataset: translate, segment real and
synthetic images with the same ground-truth boxes, and write the table."""

from __future__ import annotations

import csv
import dataclasses

import pytest

pytest.importorskip("torch")

from napari_medtrans.cli import main  # noqa: E402


def test_table3_command_writes_its_table(tmp_path, monkeypatch, one_torch_thread, capsys):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))  # no SAM2 weights: the shipped segmenter only
    data = tmp_path / "ph"
    assert main(["phantom", str(data), "--subjects", "3", "--tumour", "1.0", "--split", "0", "0", "1",
                 "--shape", "48", "56", "32"]) == 0
    out = tmp_path / "results" / "table3.md"
    # two worker processes (translation, then segmentation by subject)
    assert main(["table3", "--data", str(data), "--model", "demo", "--out", str(out), "--jobs", "2"]) == 0
    text = out.read_text()
    assert f"medtrans table3 --data {data} --model demo --out {out} --jobs 2" in text  # the command that remakes it
    assert "(2 worker processes)" in text
    for region in ("whole tumour", "tumour core", "enhancing tumour"):
        assert f"| promptunet-phantom | demo-t1-t2 | T1 -> T2 | {region} | 3 |" in text
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert len(rows) == 3 * 3 and {r["subject"] for r in rows} == {"sub-000", "sub-001", "sub-002"}
    for r in rows:
        assert 0.0 <= float(r["dice_real"]) <= 1.0 and 0.0 <= float(r["dice_synthetic"]) <= 1.0
    # the synthetic volumes sit in evaluate's folder and are reused by a second run, here in this process: the
    # same rows, in the same order, as the two workers gave
    capsys.readouterr()
    assert main(["table3", "--data", str(data), "--model", "demo", "--out", str(out), "--jobs", "1"]) == 0
    assert "already translated, skipped" in capsys.readouterr().out
    assert list(csv.DictReader(open(out.with_suffix(".csv")))) == rows
    assert main(["table3", "--data", str(data), "--model", "demo", "--out", str(out), "--jobs", "0"]) != 0
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_writing_the_table_again_keeps_its_discussion(tmp_path):
    """The `## Discussion` a person wrote under the table survives `medtrans table3` writing it again (as the
    ablation tables' do); the table itself is replaced."""
    from napari_medtrans.segment.table3 import Table3Row, write_report

    row = Table3Row("promptunet-phantom", "demo-t1-t2", "T1->T2", "sub-000", "whole tumour", 0.8, 0.7, 5.0, 6.0)
    out = tmp_path / "table3.md"
    write_report([row], out, command="medtrans table3 --data d", seconds=60)
    out.write_text(out.read_text() + "\n## Discussion\n\n- what the figures mean\n")
    write_report([dataclasses.replace(row, dice_synthetic=0.5)], out, command="medtrans table3 --data d",
                 seconds=120)
    text = out.read_text()
    assert text.count("## Discussion") == 1 and text.endswith("- what the figures mean\n")
    assert "0.500" in text and "in 2.0 min" in text
