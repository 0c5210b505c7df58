"""The papers' ablation tables as one command each: ``medtrans ablation PAPER TABLE --data DIR``.

A table (:class:`AblationTable`) is a method, a training budget and the variants a paper compares: other model
options (``--config``), other recipe options, another method with the same budget (the baseline every table needs:
a U-Net or CycleGAN trained with the same steps, data and, where the paper's loss allows, the same loss), or the
same trained model scored another way (a branch map, another number of sampling steps). :func:`run_table`

1. trains each variant with ``medtrans train`` in a child process, one after another (``--threads 1`` by default:
   the other core stays free; ``--jobs N`` trains N variants at a time, one core each), in
   ``RUNS/<paper>-table<N>/<variant>/``. A finished run is not repeated and an
   interrupted one resumes where it stopped: running the same command again continues the table;
2. evaluates each checkpoint on the test subjects with ``medtrans evaluate`` (fp32; the floors once, with the
   reference variant), skipped when the checkpoint and the options are those of the last evaluation;
3. writes ``RESULTS/<paper>-table<N>.md``: per direction, mean +- SD over subjects, the two-sided exact Wilcoxon
   signed-rank p of PSNR and SSIM paired with the reference variant (the paper's full method), whether the paper's
   ordering holds here, the floors on the same subjects, every command, the seeds and the wall times.

Choices where the papers are silent (documented here and in each table's notes):

* **Equal budgets** mean equal optimisation steps of the same batch size on the same slices. A method trained in
  stages (CDM) spreads the steps over its stages in the shipped proportions (MRM 1/6, MDN 5/16, C-UNet 25/48);
  ablation M1, which has no MRM and no MDN, gets all of them for its C-UNet.
* **An ordering holds** when the reference is higher in mean PSNR by at least :data:`NEGLIGIBLE_DB` (0.1 dB) and
  the paired Wilcoxon p is below 0.05; "reversed" when the variant is higher by as much with p < 0.05; "not shown"
  when p >= 0.05; "negligible" when the means differ by less than 0.1 dB, however small p is (subjects paired
  on one benchmark make tiny, consistent differences significant; 0.1 dB is far under what a reader sees and
  under the spread between training seeds).
* A section ``## Discussion`` at the end of a written table (what the figures mean, written by a person) is kept
  when the table is written again.
* ``--use LABEL=CHECKPOINT`` scores a checkpoint that was trained elsewhere with the variant's command (the
  shipped model, for instance) instead of training it again; the table says so.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import MedtransError, UnknownChoiceError

__all__ = ["Stage", "Variant", "AblationTable", "TABLES", "get_table", "run_table", "variant_commands",
           "read_metrics", "comparison_table", "DISCUSSION", "with_discussion"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage of a staged method: its recipe options and its share of the steps."""

    name: str
    recipe: Mapping[str, Any]
    share: float


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of an ablation table.

    ``config`` / ``recipe`` / ``train`` are merged over the table's; ``method`` trains another method (a baseline)
    with the table's budget; ``model_of`` scores the model trained for another variant (with other ``evaluate``
    options or another ``row``: ``"model"`` or an evaluated map such as ``"map: regression"``); ``stages`` None
    means the table's.
    """

    label: str
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    recipe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    evaluate: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    method: str | None = None
    row: str = "model"
    model_of: str | None = None
    stages: tuple[Stage, ...] | None = None


@dataclasses.dataclass(frozen=True)
class AblationTable:
    """A paper's ablation table: the method, the budget, the variants (the first is the reference)."""

    paper: str
    table: str
    title: str
    method: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    steps: int
    variants: tuple[Variant, ...]
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    recipe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    directions: tuple[str, ...] = ()
    stages: tuple[Stage, ...] = ()
    claim: str = "the full method scores higher than every ablated variant"
    notes: str = ""

    @property
    def key(self) -> str:
        return f"{self.paper}-table{self.table}"


# Training options shared by every table (the shipped models' habits on this CPU).
#: ``amp auto``: bf16 autocast where the CPU computes bf16 in hardware (as the tables so far were made), fp32
#: where bf16 would be emulated (about ten times slower); the checkpoint records which ran.
_COMMON = {"threads": 1, "seed": 0, "checkpoint-every": 250, "val-every": 0, "log-every": 50, "amp": "auto"}
_EDTS = dict(method="edts-trans", inputs=("T1",), outputs=("T2",), steps=6000,
             config={"preset": "cpu", "width": 16, "depth": 3},
             train={"size": [64, 64], "batch-size": 8, "lr": 1e-3, "min-lr": 1e-5, "target-norm": "dataset"})
_UNET_EDTS = Variant("U-Net, L1 + SSIM loss, same budget", method="unet", config={"width": 16, "depth": 4},
                     recipe={"loss": "l1+ssim"}, train={"lr": 2e-3})
_CDM_STAGES = (Stage("mrm", {"stage": "mrm"}, 800 / 4800), Stage("mdn", {"stage": "mdn"}, 1500 / 4800),
               Stage("cunet", {"stage": "cunet"}, 2500 / 4800))
_CDM = dict(method="cdm", inputs=("T1", "T2"), outputs=("T1c", "FLAIR"), steps=4800, config={"preset": "cpu"},
            train={"size": [128, 128], "batch-size": 4, "lr": 1e-3, "target-norm": "dataset"},
            stages=_CDM_STAGES)
_UNET_CDM = Variant("U-Net, same budget", method="unet", config={"width": 16, "depth": 4}, train={"lr": 2e-3},
                    stages=())
_MRNET = dict(method="mrnet", inputs=("FLAIR",), outputs=("T2",), steps=3000, config={"preset": "cpu"},
              train={"size": [64, 64], "batch-size": 8, "lr": 5e-4, "target-norm": "dataset"})
_UNPAIRED = dict(inputs=("T1",), outputs=("T2",), config={"preset": "cpu"}, directions=("T1:T2", "T2:T1"),
                 train={"size": [96, 96], "batch-size": 8, "lr": 2e-4, "target-norm": "volume"})
_CYCLEGAN = Variant("CycleGAN, same budget", method="cyclegan", config={"preset": "cpu"})

TABLES: tuple[AblationTable, ...] = (
    AblationTable(
        "edts", "1", "EDTS-Trans Table I: regression branch, diffusion branch, fused output", **_EDTS,
        variants=(Variant("fused (EDTS-Trans)"), Variant("regression branch", model_of="fused (EDTS-Trans)",
                                                         row="map: regression"),
                  Variant("diffusion branch", model_of="fused (EDTS-Trans)", row="map: diffusion"), _UNET_EDTS),
        claim="the fused output scores higher than either branch alone",
        notes="The branches are maps of the one trained model (`medtrans evaluate` scores them as images)."),
    AblationTable(
        "edts", "4", "EDTS-Trans Table IV: fusion mask (none / hard / dynamic) and the SSIM loss", **_EDTS,
        variants=(Variant("dynamic mask (EDTS-Trans)"), Variant("hard mask (M > 0.4)", config={"mask": "hard"}),
                  Variant("no mask (diffusion output alone)", config={"mask": "none"}),
                  Variant("w/o L_ssim", recipe={"ssim_loss": False}), _UNET_EDTS),
        claim="the dynamic mask with L_ssim scores higher than every other row"),
    AblationTable(
        "cdm", "3", "CDM Table 3: M1 (no condition), M2 (condition, no decoupling), full", **_CDM,
        variants=(Variant("full CDM"), Variant("M2 (one input layer, no decoupling)", config={"ablation": "M2"}),
                  Variant("M1 (conventional U-Net, no MRM / MDN)", config={"ablation": "M1"},
                          stages=(Stage("cunet", {"stage": "cunet"}, 1.0),)),
                  _UNET_CDM),
        notes="M1 has no MRM and no MDN: its C-UNet gets the whole budget."),
    AblationTable(
        "cdm", "4", "CDM Table 4: sampling steps N_sampling of the MDN, source-conditioned and as Eq. 3", **_CDM,
        variants=(Variant("source-conditioned MDN, N = 30"),
                  *(Variant(f"source-conditioned MDN, N = {n}", model_of="source-conditioned MDN, N = 30",
                            evaluate={"steps": n}) for n in (1, 5, 10, 50)),
                  Variant("Eq. 3 MDN (unconditional), N = 30", config={"mdn_condition": "none"}),
                  *(Variant(f"Eq. 3 MDN (unconditional), N = {n}", model_of="Eq. 3 MDN (unconditional), N = 30",
                            evaluate={"steps": n}) for n in (1, 5, 10, 50))),
        claim="results change with N_sampling (the paper's best is N = 30-40)",
        notes="The MDN conditioned on the source is the project's documented departure (translators/cdm.py); "
              "`mdn_condition=none` is Eq. 3 as printed."),
    AblationTable(
        "mrnet", "4", "MRNet Table IV: number of masks", **_MRNET,
        variants=(Variant("2 masks (MRNet)"), *(Variant(f"{n} mask{'s' if n > 1 else ''}", config={"n_masks": n})
                                                 for n in (1, 3, 4))),
        claim="two masks score higher than one, three or four"),
    AblationTable(
        "mrnet", "5", "MRNet Table V: loss terms", **_MRNET,
        variants=(Variant("all terms (MRNet)"), Variant("w/o L_feature", recipe={"lambda_feature": 0.0}),
                  Variant("w/o L_mask", recipe={"lambda_mask": 0.0}),
                  Variant("w/o L_feature and L_mask", recipe={"lambda_feature": 0.0, "lambda_mask": 0.0}),
                  Variant("U-Net, same budget", method="unet", config={"width": 16, "depth": 4},
                          train={"lr": 2e-3})),
        claim="every loss term helps"),
    AblationTable(
        "disdiff", "2", "DisDiff Table 2: without diffusion, without the content discriminator", method="disdiff",
        steps=3600, **_UNPAIRED,
        # The paper's rows 4, 3 and 1 (its row 1 has neither the diffusion module nor D_c; row 2, diffusion
        # without disentanglement, is not offered by the translator).
        variants=(Variant("full DisDiff"), Variant("w/o content discriminator", config={"use_content_disc": False}),
                  Variant("w/o diffusion, w/o content discriminator",
                          config={"use_diffusion": False, "use_content_disc": False}), _CYCLEGAN)),
    AblationTable(
        "hifisyn", "5", "HiFi-Syn Table 5: without the bank of memory, without labels", method="hifi-syn",
        steps=5000, **_UNPAIRED,
        variants=(Variant("full HiFi-Syn"), Variant("w/o memory bank", config={"use_bmb": False}),
                  Variant("w/o labels", config={"use_labels": False}), _CYCLEGAN)),
)


def get_table(paper: str, table: str) -> AblationTable:
    """The table ``paper``/``table`` ("edts", "1" or "I"); a clear error lists the known ones."""
    roman = {"I": "1", "II": "2", "III": "3", "IV": "4", "V": "5"}
    number = roman.get(str(table).upper(), str(table))
    for t in TABLES:
        if t.paper == paper.lower().replace("-", "").replace("trans", "") and t.table == number:
            return t
    raise UnknownChoiceError("ablation table", f"{paper} {table}", [f"{t.paper} {t.table}" for t in TABLES])


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:60] or "variant"


def _flag_values(key: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [f"--{key}"] if value else [f"--no-{key}"]
    if isinstance(value, (list, tuple)):
        return [f"--{key}", *map(str, value)]
    return [f"--{key}", str(value)]


def _kv(options: Mapping[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, (bool, list, dict)) or v is None else v}"
            for k, v in options.items()]


@dataclasses.dataclass
class _Plan:
    """What one variant runs: its training stages (argv lists) and the checkpoint it ends on."""

    variant: Variant
    run_dir: Path
    stages: list[tuple[Path, list[str]]]
    checkpoint: Path
    used: Path | None = None  # --use: a checkpoint trained elsewhere
    steps: int = 0  # the budget (all stages)
    final_steps: int = 0  # its last stage's steps: what a checkpoint it trains records


def variant_commands(table: AblationTable, data: Path, runs: Path, *, steps: int | None = None,
                     config: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
                     use: Mapping[str, Path] | None = None) -> dict[str, _Plan]:
    """The training commands of every variant (``medtrans train`` argv lists without the program), by label."""
    total = int(steps or table.steps)
    if total < 1:
        raise MedtransError(f"--steps must be positive, got {total}")
    labels = [v.label for v in table.variants]
    use = dict(use or {})
    for label in use:
        if label not in labels:
            raise UnknownChoiceError("variant", label, labels)
    plans: dict[str, _Plan] = {}
    for v in table.variants:
        run_dir = runs / table.key / slug(v.label)
        if v.model_of is not None:
            base = plans[v.model_of]
            plans[v.label] = _Plan(v, run_dir, [], base.checkpoint, base.used, base.steps, base.final_steps)
            continue
        method = v.method or table.method
        same_method = v.method is None
        cfg = {**(table.config if same_method else {}), **v.config, **(config or {})}
        if not same_method and "preset" in (config or {}) and method == "unet":
            cfg.pop("preset")  # the U-Net has no presets
        recipe = {**(table.recipe if same_method else {}), **v.recipe}
        opts = {**_COMMON, **table.train, **v.train, **(train or {})}
        stages = table.stages if v.stages is None else v.stages
        if not same_method:
            stages = ()
        argv_base = ["--method", method, "--data", str(data), "--inputs", *table.inputs, "--outputs", *table.outputs]
        for key, value in opts.items():
            argv_base += _flag_values(key, value)
        if cfg:
            argv_base += ["--config", *_kv(cfg)]
        out: list[tuple[Path, list[str]]] = []
        previous: Path | None = None
        if not stages:
            argv = [*argv_base, "--out", str(run_dir), "--steps", str(total)]
            if recipe:
                argv += ["--recipe-option", *_kv(recipe)]
            out.append((run_dir, argv))
        else:
            done = 0
            for k, st in enumerate(stages):
                n = total - done if k == len(stages) - 1 else max(1, round(total * st.share))
                done += n
                stage_dir = run_dir / f"stage-{k + 1}-{st.name}"
                options = {**recipe, **st.recipe}
                if previous is not None:
                    options["init"] = str(previous / "model.safetensors")
                argv = [*argv_base, "--out", str(stage_dir), "--steps", str(n), "--recipe-option", *_kv(options)]
                out.append((stage_dir, argv))
                previous = stage_dir
        checkpoint = out[-1][0] / "model.safetensors"
        used = Path(use[v.label]) if v.label in use else None
        final = int(out[-1][1][out[-1][1].index("--steps") + 1])
        plans[v.label] = _Plan(v, run_dir, [] if used else out, used or checkpoint, used, total, final)
    return plans


def _training(ckpt: Path) -> dict:
    """The training record of a checkpoint ({} when there is none yet, or it is unreadable: train it again)."""
    from ..translators.checkpoint import read_checkpoint_metadata

    if not ckpt.is_file():
        return {}
    try:
        training = read_checkpoint_metadata(ckpt).training
    except MedtransError:
        return {}
    return training if isinstance(training, dict) else {}


def _run(argv: list[str], log_path: Path, log: Callable[[str], None]) -> None:
    log("  $ medtrans " + shlex.join(argv[3:]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as fh:
        fh.write("$ medtrans " + shlex.join(argv[3:]) + "\n")
        fh.flush()
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise MedtransError(f"a command of the table failed (exit {proc.returncode}); the end of its log:\n{tail}",
                            log_path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def read_metrics(path: str | os.PathLike, method: str = "model") -> dict[tuple[str, str], dict[str, float]]:
    """(direction, subject) -> {psnr, ssim, mae} of one method's rows (``"model"``, ``"map: regression"``,
    ``"floor: lookup"``, ...) of a ``medtrans evaluate`` CSV."""
    return {(r["direction"], r["subject"]): {m: float(r[m]) for m in ("psnr", "ssim", "mae")}
            for r in _read_rows(Path(path)) if r.get("method", "model") == method}


def comparison_table(per: Mapping[str, Mapping[tuple[str, str], Mapping[str, float]]],
                     reference: str) -> tuple[list[str], list[str]]:
    """Markdown rows (direction, variant, n, mean +- SD of PSNR / SSIM / MAE, paired p of PSNR and SSIM against
    ``reference``) of ``per`` (label -> :func:`read_metrics` result) on the subjects each shares with the
    reference, and one verdict line per variant and direction (:func:`_verdict`)."""
    import numpy as np

    ref = per[reference]
    lines = ["| direction | variant | n | PSNR (dB) | SSIM | MAE | p (PSNR, SSIM) |", "|---|---|---|---|---|---|---|"]
    verdicts = []
    for d in sorted({d for d, _s in ref}):
        for label, rows in per.items():
            keys = sorted(k for k in rows if k[0] == d and k in ref)
            if not keys:
                continue
            vals = {m: np.array([rows[k][m] for k in keys]) for m in ("psnr", "ssim", "mae")}
            cells = [f"{v.mean():.{2 if m == 'psnr' else 4}f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:.{2 if m == 'psnr' else 4}f}"
                     for m, v in vals.items()]
            p_text = "-"
            if label != reference:
                rp = [ref[k]["psnr"] for k in keys]
                p_psnr = _paired_p(rp, vals["psnr"])
                p_text = f"{p_psnr:.3g}, {_paired_p([ref[k]['ssim'] for k in keys], vals['ssim']):.3g}"
                verdicts.append(f"- {d}: {reference} > {label}: {_verdict(rp, vals['psnr'], p_psnr)}")
            lines.append(f"| {d} | {label} | {len(keys)} | " + " | ".join(cells) + f" | {p_text} |")
    return lines, verdicts


def run_table(table: AblationTable, data: str | os.PathLike, *, runs: str | os.PathLike = "runs/ablation",
              results: str | os.PathLike = "docs/results", steps: int | None = None,
              config: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
              use: Mapping[str, Path] | None = None, command: str = "", jobs: int = 1,
              log: Callable[[str], None] = print) -> Path:
    """Train, evaluate and tabulate ``table`` (module notes); returns the markdown file written.

    ``jobs`` variants are trained (their stages one after another) and evaluated at the same time, each in its
    own child process on one thread; the commands, and so the checkpoints and figures, are those of ``jobs=1``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise MedtransError(f"--jobs must be a positive integer, got {jobs!r}")
    data, runs, results = Path(data), Path(runs), Path(results)
    plans = variant_commands(table, data, runs, steps=steps, config=config, train=train, use=use)
    exe = [sys.executable, "-m", "napari_medtrans.cli"]
    reference = table.variants[0].label

    def train_variant(label: str) -> float:
        plan = plans[label]
        log(f"[{table.key}] {label}")
        train_s = 0.0  # (a variant that scores another one's model, or a --use checkpoint, trains nothing)
        for stage_dir, argv in plan.stages:
            n = int(argv[argv.index("--steps") + 1])
            if _training(stage_dir / "model.safetensors").get("steps") != n:
                _run([*exe, "train", *argv], plan.run_dir / "train.log", log)
            train_s += float(_training(stage_dir / "model.safetensors").get("wall_time_s", 0.0))
        return train_s

    def evaluate_variant(label: str) -> tuple[Path, float]:
        plan = plans[label]
        if not plan.checkpoint.is_file():
            raise MedtransError(f"variant {label!r} has no checkpoint", plan.checkpoint)
        eval_opts = {"precision": "fp32", **plan.variant.evaluate}
        eval_argv = ["evaluate", "--model", str(plan.checkpoint), "--data", str(data)]
        for key, value in eval_opts.items():
            eval_argv += _flag_values(key, value)
        for d in table.directions:
            eval_argv += ["--direction", d]
        if label != reference:
            eval_argv.append("--no-floors")
        stamp = {"sha256": _sha256(plan.checkpoint), "argv": eval_argv[3:]}
        key = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
        eval_dir = runs / table.key / "evaluation" / key
        csv_path = eval_dir / "metrics.csv"
        stamp_path = eval_dir / "stamp.json"
        if not (csv_path.is_file() and stamp_path.is_file()
                and json.loads(stamp_path.read_text()).get("stamp") == stamp):
            t0 = time.perf_counter()
            _run([*exe, *eval_argv, "--out", str(eval_dir), "--csv", str(csv_path)], eval_dir / "evaluate.log", log)
            stamp_path.write_text(json.dumps({"stamp": stamp, "wall_time_s": time.perf_counter() - t0}, indent=1))
        return csv_path, float(json.loads(stamp_path.read_text()).get("wall_time_s", 0.0))

    # Rows of another variant's model scored the same way (a branch map) need no evaluation of their own.
    shared = {label for label, plan in plans.items() if plan.variant.model_of is not None and not plan.variant.evaluate}
    trained = _each(train_variant, [label for label, plan in plans.items() if plan.variant.model_of is None], jobs)
    scored = _each(evaluate_variant, [label for label in plans if label not in shared], jobs)
    evaluations: dict[str, Path] = {}
    times: dict[str, dict[str, float]] = {}
    for label, plan in plans.items():
        if label in shared:
            evaluations[label] = scored[plan.variant.model_of][0]
            times[label] = {"train": 0.0, "evaluate": 0.0}
        else:
            evaluations[label] = scored[label][0]
            times[label] = {"train": trained.get(label, 0.0), "evaluate": scored[label][1]}
    md = _markdown(table, plans, evaluations, times, data, command)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{table.key}.md"
    out.write_text(with_discussion(md, out))
    log(f"wrote {out}")
    return out


def _each(fn: Callable[[str], Any], labels: Sequence[str], jobs: int) -> dict[str, Any]:
    """``{label: fn(label)}``, ``jobs`` at a time (in threads: each ``fn`` waits on a child process). After a
    failure no further call starts; those running end (their work is kept for the next run), then the first
    failure is raised."""
    if jobs == 1 or len(labels) < 2:
        return {label: fn(label) for label in labels}
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {label: pool.submit(fn, label) for label in labels}
        wait(futures.values(), return_when=FIRST_EXCEPTION)
        for f in futures.values():
            f.cancel()  # only those not started yet
    for f in futures.values():
        if not f.cancelled() and f.exception() is not None:
            raise f.exception()
    return {label: f.result() for label, f in futures.items()}


def _paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact Wilcoxon signed-rank p (1.0 when every difference is zero)."""
    import numpy as np
    from scipy.stats import wilcoxon

    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2 or not np.any(d != 0):
        return 1.0
    try:
        return float(wilcoxon(a, b).pvalue)
    except ValueError:
        return 1.0


#: A section of this title at the end of a written table (the reader's discussion) survives regeneration.
DISCUSSION = "## Discussion"


def with_discussion(md: str, out: Path) -> str:
    """``md`` followed by the hand-written :data:`DISCUSSION` at the end of the file ``out`` writes over, if any."""
    if out.is_file():
        old = out.read_text()
        if DISCUSSION in old:
            return md.rstrip("\n") + "\n\n" + old[old.index(DISCUSSION):].lstrip("\n")
    return md

#: Mean PSNR differences below this are called negligible, whatever their p (module notes).
NEGLIGIBLE_DB = 0.1


def _verdict(ref: Sequence[float], var: Sequence[float], p: float) -> str:
    import numpy as np

    diff = float(np.mean(ref) - np.mean(var))
    if abs(diff) < NEGLIGIBLE_DB:
        return f"negligible ({diff:+.2f} dB, p = {p:.2g})"
    if p >= 0.05:
        return f"not shown ({diff:+.2f} dB, p = {p:.2g})"
    return f"holds ({diff:+.2f} dB, p = {p:.2g})" if diff > 0 else f"reversed ({diff:+.2f} dB, p = {p:.2g})"


def _used_line(plan: _Plan) -> str:
    """The commands-list line of a ``--use`` variant: what its file records when that is not the table's budget."""
    head = f"  - not retrained: `{plan.used}` (sha256 {_sha256(plan.used)[:12]}), "
    record = _training(plan.used)
    if record.get("steps") == plan.final_steps:
        return head + "trained with the command this variant runs"
    return (head + f"trained elsewhere: its file records {record.get('steps', 'no')} steps, amp "
            f"{record.get('amp', 'unrecorded')}, **not this table's {plan.steps}**")


def _markdown(table: AblationTable, plans: Mapping[str, _Plan], evaluations: Mapping[str, Path],
              times: Mapping[str, Mapping[str, float]], data: Path, command: str) -> str:
    import numpy as np

    ref_label = table.variants[0].label
    per = {}
    for label, path in evaluations.items():
        row = plans[label].variant.row
        per[label] = read_metrics(path, row)
        if not per[label]:
            raise MedtransError(f"variant {label!r}: the evaluation has no rows {row!r}", path)
    floors = {kind: read_metrics(evaluations[ref_label], f"floor: {kind}") for kind in ("identity", "histogram", "lookup")}
    floors = {kind: rows for kind, rows in floors.items() if rows}
    directions = sorted({d for d, _s in per[ref_label]})
    lines = [f"# {table.title}", "", "Regenerate (the benchmark data: docs/benchmark.md):", "", "```bash",
             command or f"medtrans ablation {table.paper} {table.table} --data {data}", "```", "",
             f"Test subjects of `{data}`, whole volumes inside the brain mask, fp32. Equal budgets: "
             f"{plans[ref_label].steps} steps per variant, seed 0. p: two-sided exact Wilcoxon signed-rank test "
             f"over subjects, paired with **{ref_label}**.", ""]
    if table.notes:
        lines += [table.notes, ""]
    rows, verdicts = comparison_table(per, ref_label)
    lines += rows
    if floors:
        lines += ["", "Floors on the same subjects (zero-parameter, fitted on the training subjects; "
                      "`medtrans floors`):", "", "| direction | floor | PSNR (dB) | SSIM |", "|---|---|---|---|"]
        for d in directions:
            for name, floor_rows in floors.items():
                sel = [v for (dd, _s), v in floor_rows.items() if dd == d]
                if sel:
                    lines.append(f"| {d} | {name} | {np.mean([r['psnr'] for r in sel]):.2f} | "
                                 f"{np.mean([r['ssim'] for r in sel]):.4f} |")
    lines += ["", "## The paper's ordering here", "", f"The paper: {table.claim}. Measured (mean PSNR difference, "
              "reference minus variant):", "", *verdicts, "", "## Commands, wall time", ""]
    for label, plan in plans.items():
        t = times[label]
        lines.append(f"- **{label}**: training {t['train'] / 60:.1f} min, evaluation {t['evaluate'] / 60:.1f} min "
                     "(wall time on this machine)")
        if plan.variant.model_of is not None:
            lines.append(f"  - the model of \"{plan.variant.model_of}\", scored as `{plan.variant.row}`"
                         + (f" with {dict(plan.variant.evaluate)}" if plan.variant.evaluate else ""))
        elif plan.used is not None:
            lines.append(_used_line(plan))
        for _dir, argv in plan.stages:
            lines.append(f"  - `medtrans train {shlex.join(argv)}`")
    return "\n".join(lines) + "\n"

