"""`medtrans ablation`: a paper's table trained with equal budgets, evaluated, written; resumable; the commands."""

import pytest

from napari_medtrans.cli import main
from napari_medtrans.core.errors import MedtransError
from napari_medtrans.phantom import write_phantom_dataset
from napari_medtrans.training.ablation import _verdict, get_table, variant_commands


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation") / "data"
    write_phantom_dataset(root, 4, shape=(24, 24, 8), split=(0.5, 0.25, 0.25))
    return root


def _steps(argv):
    return int(argv[argv.index("--steps") + 1])


def test_tables_are_found_by_paper_and_number():
    assert get_table("edts-trans", "I") is get_table("edts", "1")
    assert get_table("HiFi-Syn", "5").method == "hifi-syn"
    with pytest.raises(MedtransError, match="known: .*cdm 4"):
        get_table("cdm", "7")


def test_staged_methods_share_the_budget_and_chain_their_stages(tmp_path):
    plans = variant_commands(get_table("cdm", "3"), tmp_path / "d", tmp_path / "r", steps=480)
    full = plans["full CDM"].stages
    assert [_steps(a) for _d, a in full] == [80, 150, 250]  # the shipped 800 : 1500 : 2500
    assert f"init={full[0][0] / 'model.safetensors'}" in full[1][1]  # MDN starts from the MRM
    assert f"init={full[1][0] / 'model.safetensors'}" in full[2][1]
    m1 = plans["M1 (conventional U-Net, no MRM / MDN)"].stages
    assert [_steps(a) for _d, a in m1] == [480] and "ablation=M1" in m1[0][1]  # the whole budget, C-UNet only
    unet = plans["U-Net, same budget"].stages
    assert [_steps(a) for _d, a in unet] == [480] and unet[0][1][unet[0][1].index("--method") + 1] == "unet"
    # Every variant is trained on the same slices with the same batch and seed.
    for plan in plans.values():
        for _d, argv in plan.stages:
            for flag, value in (("--size", "128"), ("--batch-size", "4"), ("--seed", "0"), ("--data", str(tmp_path / "d"))):
                assert argv[argv.index(flag) + 1] == value
    shipped = tmp_path / "full.safetensors"
    used = variant_commands(get_table("cdm", "3"), tmp_path / "d", tmp_path / "r", use={"full CDM": shipped})
    assert used["full CDM"].stages == [] and used["full CDM"].checkpoint == shipped
    with pytest.raises(MedtransError, match="unknown variant"):
        variant_commands(get_table("cdm", "3"), tmp_path / "d", tmp_path / "r", use={"fulll": shipped})


def test_the_verdict_needs_a_significant_difference():
    assert _verdict([20, 21, 22], [19, 20, 21], 0.01).startswith("holds (+1.00 dB")
    assert _verdict([20, 21, 22], [21, 22, 23], 0.01).startswith("reversed (-1.00 dB")
    assert _verdict([20, 21, 22], [19, 20, 21], 0.2).startswith("not shown")
    assert _verdict([20, 21, 22], [19.96, 20.96, 21.96], 0.001).startswith("negligible (+0.04 dB")


def test_a_table_end_to_end_and_again_without_rework(data, tmp_path, capsys):
    """EDTS Table I with a tiny budget: one EDTS model scored as fused output and as its two branches, a U-Net with
    the same loss and budget; the table, the floors, the orderings and the commands are written. Running the same
    command again trains and evaluates nothing."""
    args = ["ablation", "edts", "1", "--data", str(data), "--runs", str(tmp_path / "runs"), "--results",
            str(tmp_path / "results"), "--steps", "2", "--config", "width=4", "depth=2", "--train-option",
            "size=[16,16]", "batch-size=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("$ medtrans train") == 2 and out.count("$ medtrans evaluate") == 2  # branches: no rework
    md = (tmp_path / "results" / "edts-table1.md").read_text()
    for row in ("| T1->T2 | fused (EDTS-Trans) | 1 |", "| T1->T2 | regression branch | 1 |",
                "| T1->T2 | diffusion branch | 1 |", "| T1->T2 | U-Net, L1 + SSIM loss, same budget | 1 |",
                "| T1->T2 | histogram |", "| T1->T2 | lookup |", "fused (EDTS-Trans) > regression branch: ",
                "--recipe-option loss=l1+ssim", "medtrans ablation edts 1 --data"):
        assert row in md, row
    branch = [line for line in md.splitlines() if line.startswith("| T1->T2 | regression branch")][0]
    fused = [line for line in md.splitlines() if line.startswith("| T1->T2 | fused")][0]
    assert branch.split("|")[4] != fused.split("|")[4]  # a branch is another image than the fused output
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.csv")}
    written = tmp_path / "results" / "edts-table1.md"
    written.write_text(md + "\n## Discussion\n\nWhat a person wrote.\n")
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "$ medtrans" not in again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.csv")} == before
    assert written.read_text() == md + "\n## Discussion\n\nWhat a person wrote.\n"  # the discussion is kept


def test_dry_run_prints_the_commands(data, tmp_path, capsys):
    assert main(["ablation", "disdiff", "2", "--data", str(data), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "use_diffusion=false" in out and "use_content_disc=false" in out and "--method cyclegan" in out
    assert out.count("--steps 3600") == 4
    # the paper's row 1 has neither the diffusion module nor the content discriminator
    assert any("use_diffusion=false" in line and "use_content_disc=false" in line for line in out.splitlines())
    assert main(["ablation", "edts", "1"]) == 2  # no --data: one line naming what is missing
    assert "give PAPER TABLE and --data" in capsys.readouterr().err


def test_jobs_run_variants_side_by_side_with_the_same_results(data, tmp_path, capsys):
    """--jobs 2 trains and evaluates two variants at a time and writes the table --jobs 1 writes: the same commands,
    checkpoints and figures (wall times aside); a bad --jobs is refused with one line."""
    def table(jobs):
        out = tmp_path / f"jobs{jobs}"
        args = ["ablation", "edts", "1", "--data", str(data), "--runs", str(out / "runs"), "--results",
                str(out / "results"), "--steps", "2", "--config", "width=4", "depth=2", "--train-option",
                "size=[16,16]", "batch-size=2", "--jobs", str(jobs)]
        assert main(args) == 0
        log = capsys.readouterr().out
        rows = [line for line in (out / "results" / "edts-table1.md").read_text().splitlines()
                if line.startswith("| T1->T2 |")]
        return log, rows

    log1, rows1 = table(1)
    log2, rows2 = table(2)
    assert log2.count("$ medtrans train") == 2 and log2.count("$ medtrans evaluate") == 2
    assert len(rows1) >= 6 and rows2 == rows1
    assert main(["ablation", "edts", "1", "--data", str(data), "--jobs", "0"]) == 2
    assert "--jobs must be a positive integer" in capsys.readouterr().err


def test_after_a_failed_job_no_further_job_starts_and_the_failure_is_raised():
    """A variant that fails stops the table: variants not started yet are not started, those running finish (their
    work is kept for the next run), then the first failure is raised, not a cancellation."""
    import threading

    from napari_medtrans.training.ablation import _each

    started, never = [], threading.Event()

    def job(label):
        started.append(label)
        if label == "b":
            raise MedtransError("variant b failed")
        never.wait(1.0)  # a running job: long enough for the failure to be seen before it ends
        return label * 2

    assert _each(job, ["a", "c"], 2) == {"a": "aa", "c": "cc"}
    started.clear()
    with pytest.raises(MedtransError, match="variant b failed"):
        _each(job, ["a", "b", "c", "d", "e"], 2)
    assert {"a", "b"} <= set(started) and "d" not in started and "e" not in started


def test_a_used_checkpoint_of_another_budget_says_so(tmp_path, monkeypatch):
    """--use of a file trained with other steps (a shipped model of another budget) is named as such in the table,
    not as "trained with the command this variant runs"."""
    from napari_medtrans.training import ablation

    table = get_table("hifisyn", "5")
    ckpt = tmp_path / "cyclegan.safetensors"
    ckpt.write_bytes(b"not read: _training is replaced")
    plan = variant_commands(table, tmp_path / "d", tmp_path / "r", steps=1000,
                            use={"CycleGAN, same budget": ckpt})["CycleGAN, same budget"]
    monkeypatch.setattr(ablation, "_training", lambda path: {"steps": 4600, "amp": "bf16"})
    line = ablation._used_line(plan)
    assert "4600 steps" in line and "bf16" in line and "not this table's 1000" in line
    assert "the command this variant runs" not in line
    monkeypatch.setattr(ablation, "_training", lambda path: {"steps": 1000, "amp": "off"})
    assert "the command this variant runs" in ablation._used_line(plan)
