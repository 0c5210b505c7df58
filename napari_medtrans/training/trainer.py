"""One generic trainer for every method: the recipe says what a step is, the trainer does the rest.

What it does
------------
* AdamW optimisers as the recipe specifies them, a cosine learning-rate schedule from ``lr`` down to
  ``min_lr`` (after an optional linear warm-up), gradient clipping by norm.
* Mixed precision on CUDA (``amp="auto"``: bf16 where supported, else fp16 with a GradScaler); fp32 on the CPU.
* ``out_dir/training_state.pt`` every ``checkpoint_every`` steps: weights of every module, optimiser states,
  GradScaler, step, epoch and position in the epoch, RNG states. It holds only tensors and plain containers, is
  written atomically and read back with ``torch.load(weights_only=True)``. A run started again on the same
  ``out_dir`` continues from it (``resume=True``); with the same settings the result is the same as an
  uninterrupted run (on the CPU, bit for bit). ``out_dir/last.safetensors`` is the model at that step.
* Validation every ``val_every`` steps on the validation slices: PSNR, SSIM and MAE on [-1, 1] images
  (``data_range=2``) over whole slices, and the same inside the brain mask (``brain_*``).
* A progress bar (tqdm, only on a terminal), and one row per log event in ``out_dir/log.jsonl`` and
  ``out_dir/log.csv`` (step, learning rate, mean losses since the last row, validation metrics).
* Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set): one process per device, the process group on
  NCCL (CUDA) or gloo (CPU), modules in DistributedDataParallel, a DistributedSampler, logs and files from rank 0
  only. The batch size is per process.
* The final checkpoint ``out_dir/model.safetensors`` (via
  :func:`~napari_medtrans.translators.checkpoint.save_checkpoint`) carries the normalisation statistics of the
  training targets, how it was trained (command, data, steps, wall time, seed, ...) and the final validation
  metrics.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as _dt
import itertools
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..core.errors import CheckpointError, MedtransError, UnknownChoiceError
from ..translators.base import Translator
from .recipes import Recipe, RecipeParts, get_recipe

__all__ = ["Trainer", "TrainResult", "TrainingDivergedError", "cosine_lr", "STATE_FILE", "FINAL_CHECKPOINT"]

STATE_FILE = "training_state.pt"
LAST_CHECKPOINT = "last.safetensors"
FINAL_CHECKPOINT = "model.safetensors"
STATE_FORMAT = "napari-medtrans/training-state/1"
AMP_CHOICES = ("auto", "bf16", "fp16", "off")


class TrainingDivergedError(MedtransError):
    """A loss became NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    checkpoint: Path
    step: int
    wall_time_s: float
    metrics: dict
    log_jsonl: Path
    log_csv: Path
    resumed_from: int = 0


def cosine_lr(step: int, total: int, lr: float, min_lr: float, warmup: int = 0) -> float:
    """Learning rate at ``step`` (0-based) of ``total``: linear warm-up, then cosine from ``lr`` at the first step
    after the warm-up to ``min_lr`` at the last step (``total - 1``)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    span = max(total - 1 - warmup, 1)
    t = min(max(step - warmup, 0) / span, 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


# -- distributed ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def _dist_from_env(device_type: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    d = _Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        d.owns_group = True
    return d


def _resolve_device(device: str | torch.device, dist: _Dist) -> torch.device:
    """The device of this process (:func:`~napari_medtrans.core.device.resolve_device`; in distributed training
    the GPU of its local rank)."""
    from ..core.device import resolve_device

    return resolve_device(device, local_rank=dist.local_rank if dist.enabled else None)


class _ResumableSampler(Sampler):
    """A DistributedSampler (shuffled per epoch from the seed) that can start part-way into an epoch."""

    def __init__(self, dataset: Dataset, dist: _Dist, seed: int):
        self.base = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                       seed=seed, drop_last=True)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.base) - self.skip, 0)


# -- the step context offered to recipes ----------------------------------------------------------------
class _Context:
    def __init__(self, trainer: "Trainer"):
        self._t = trainer
        self.device = trainer.device
        self.step = 0

    def autocast(self):
        t = self._t
        if t.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=t.device.type, dtype=t.amp_dtype)

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        t = self._t
        if name not in t.optimizers:
            raise UnknownChoiceError("optimiser", name, list(t.optimizers))
        opt = t.optimizers[name]
        opt.zero_grad(set_to_none=True)
        if t.scaler is not None:
            t.scaler.scale(loss).backward()
            t.scaler.unscale_(opt)
        else:
            loss.backward()
        if t.grad_clip:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        if t.scaler is not None:
            t.scaler.step(opt)
        else:
            opt.step()

    @contextlib.contextmanager
    def frozen(self, name: str):
        module = self._t.raw_modules[name]
        flags = [p.requires_grad for p in module.parameters()]
        for p in module.parameters():
            p.requires_grad_(False)
        try:
            yield module
        finally:
            for p, f in zip(module.parameters(), flags):
                p.requires_grad_(f)


# -- logs -----------------------------------------------------------------------------------------------
class _Logs:
    """log.jsonl and log.csv in ``out_dir``; on resume, rows after the resumed step are dropped."""

    VAL_KEYS = ("val_psnr", "val_ssim", "val_mae", "val_brain_psnr", "val_brain_ssim", "val_brain_mae")

    def __init__(self, out_dir: Path, fresh: bool, keep_until: int):
        self.jsonl = out_dir / "log.jsonl"
        self.csv = out_dir / "log.csv"
        self.fields: list[str] | None = None
        if fresh:
            for p in (self.jsonl, self.csv):
                p.unlink(missing_ok=True)
            return
        if self.jsonl.exists():
            rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
            rows = [r for r in rows if int(r.get("step", 0)) <= keep_until]
            self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if self.csv.exists():
            with self.csv.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if int(float(r.get("step") or 0)) <= keep_until]
            self._rewrite_csv(rows)

    def _rewrite_csv(self, rows) -> None:
        if self.fields is None:
            return
        with self.csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def write(self, row: Mapping[str, Any]) -> None:
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.fields is None:
            losses = [k for k in row if k not in ("step", "epoch", "lr", "wall_time_s", "event") and
                      not k.startswith("val_")]
            self.fields = ["event", "step", "epoch", "wall_time_s", "lr", *losses, *self.VAL_KEYS]
            self._rewrite_csv([])
        with self.csv.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(row)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _finite_mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


class Trainer:
    """Train a translator with a recipe.

    Parameters
    ----------
    recipe : Recipe or str
        A recipe, or a method name for :func:`~napari_medtrans.training.recipes.get_recipe`.
    model : Translator
        The translator to train (its initial weights are used unless a run is resumed).
    train_ds, val_ds : torch Dataset
        Items are dicts with ``"input"``, ``"target"`` and (for validation) ``"mask"`` tensors, as
        :class:`~napari_medtrans.training.datasets.PairedSliceDataset` yields. ``val_ds`` may be None.
    out_dir : path-like
        Where checkpoints, the training state and the logs go.
    steps : int
        Total optimisation steps (one batch each).
    batch_size : int
        Slices per step and process.
    lr, min_lr : float
        Peak and final learning rate of the cosine schedule (defaults: the recipe's ``default_lr``; its
        ``default_min_lr`` when it has one, else lr/100).
    warmup : int
        Linear warm-up steps.
    amp : {"auto", "bf16", "fp16", "off"}
        Mixed precision; "auto" is bf16 (else fp16) on CUDA and off elsewhere.
    grad_clip : float or None
        Clip each optimiser's gradient norm to this (None or 0: no clipping).
    checkpoint_every, val_every, log_every : int
        Intervals in steps (0 disables periodic checkpoints / validation).
    seed : int
        Seeds Python, NumPy and torch (plus the rank) and the sampler's shuffling.
    num_workers : int
        DataLoader worker processes.
    resume : bool
        Continue from ``out_dir/training_state.pt`` when it exists; False starts afresh and overwrites.
    device : str
        "auto", "cpu", "cuda", "cuda:1", "mps".
    progress : bool or None
        Show a tqdm bar; None shows it only when stderr is a terminal.
    on_log : callable, optional
        Called with every log row (a dict) on rank 0; the CLI prints them when there is no progress bar.
    info : dict, optional
        Extra training information for the checkpoint (command line, data path, ...).
    normalisation : dict, optional
        Normalisation statistics for the checkpoint; default ``train_ds.normalisation`` when present.
    val_max_slices : int or None
        Validate on at most this many slices, evenly spaced over the validation set.
    """

    def __init__(
        self,
        recipe: Recipe | str,
        model: Translator,
        train_ds: Dataset,
        val_ds: Dataset | None = None,
        *,
        out_dir: str | os.PathLike,
        steps: int,
        batch_size: int = 8,
        lr: float | None = None,
        min_lr: float | None = None,
        warmup: int = 0,
        amp: str | bool = "auto",
        grad_clip: float | None = 1.0,
        checkpoint_every: int = 500,
        val_every: int = 500,
        seed: int = 0,
        num_workers: int = 0,
        log_every: int = 10,
        resume: bool = True,
        device: str | torch.device = "auto",
        progress: bool | None = None,
        on_log: Callable[[dict], None] | None = None,
        info: Mapping[str, Any] | None = None,
        normalisation: Mapping[str, Any] | None = None,
        val_max_slices: int | None = None,
    ):
        if not isinstance(model, Translator):
            raise TypeError(f'Argument "model" must be a Translator, got {type(model).__name__}.')
        for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1), ("log_every", log_every, 1),
                                 ("checkpoint_every", checkpoint_every, 0), ("val_every", val_every, 0),
                                 ("num_workers", num_workers, 0), ("warmup", warmup, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f'Argument "{name}" must be an integer >= {low}, got {value!r}.')
        self.recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
        self.model = model
        self.train_ds, self.val_ds = train_ds, val_ds
        self.out_dir = Path(out_dir)
        self.steps, self.batch_size, self.warmup = steps, batch_size, warmup
        self.lr = float(lr if lr is not None else self.recipe.default_lr)
        if min_lr is None:
            min_lr = getattr(self.recipe, "default_min_lr", None)
            min_lr = self.lr / 100 if min_lr is None else min(float(min_lr), self.lr)
        self.min_lr = float(min_lr)
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f'Arguments "lr"/"min_lr" must satisfy 0 <= min_lr <= lr and lr > 0, '
                             f"got lr={self.lr}, min_lr={self.min_lr}.")
        self.grad_clip = float(grad_clip) if grad_clip else None
        self.checkpoint_every, self.val_every, self.log_every = checkpoint_every, val_every, log_every
        self.seed, self.num_workers, self.resume = int(seed), num_workers, bool(resume)
        self.progress, self.on_log = progress, on_log
        self.info = dict(info or {})
        self.normalisation = (dict(normalisation) if normalisation is not None
                              else getattr(train_ds, "normalisation", None))
        self.val_max_slices = val_max_slices
        amp = "off" if amp is False else ("auto" if amp is True else amp)
        if amp not in AMP_CHOICES:
            raise UnknownChoiceError("AMP mode", str(amp), AMP_CHOICES)
        self._amp_request = amp
        self._device_request = device

    # -- setup ----------------------------------------------------------------------------------------
    def _setup(self) -> None:
        request = self._device_request
        dev_type = torch.device(request).type if request != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist = _dist_from_env(dev_type)
        self.device = _resolve_device(request, self.dist)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
        self.amp_dtype = self._amp_dtype()
        self.scaler = (torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 and self.device.type == "cuda"
                       else None)
        _seed_everything(self.seed + self.dist.rank)

        parts: RecipeParts = self.recipe.build(self.model)
        self.raw_modules: dict[str, nn.Module] = {"model": self.model, **parts.modules}
        for m in self.raw_modules.values():
            m.to(self.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for name, spec in parts.optimizers.items():
            unknown = [m for m in spec.modules if m not in self.raw_modules]
            if unknown:
                raise UnknownChoiceError("module", unknown[0], list(self.raw_modules))
            params = [p for m in spec.modules for p in self.raw_modules[m].parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=self.lr * spec.lr_scale, betas=tuple(spec.betas),
                                    weight_decay=spec.weight_decay)
            for g in opt.param_groups:
                g["lr_scale"] = spec.lr_scale
            self.optimizers[name] = opt
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.modules = {k: DDP(m, device_ids=ids) if any(p.requires_grad for p in m.parameters()) else m
                            for k, m in self.raw_modules.items()}
        else:
            self.modules = dict(self.raw_modules)

        self.sampler = _ResumableSampler(self.train_ds, self.dist, self.seed)
        per_epoch = len(self.sampler.base) // self.batch_size
        if per_epoch == 0:
            raise MedtransError(
                f"the training set has {len(self.train_ds)} slices, fewer than one batch of {self.batch_size} "
                f"per process ({self.dist.world_size} process(es)); lower the batch size or add subjects",
                getattr(getattr(self.train_ds, "dataset", None), "root", None),
            )
        self.loader = DataLoader(self.train_ds, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                                 num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                                 generator=self._loader_generator())

    def _loader_generator(self) -> torch.Generator:
        # Starting a DataLoader iterator draws a seed for its workers; from a generator of its own, that draw
        # leaves the global RNG alone, so a resumed run (which starts a new iterator mid-epoch) matches.
        return torch.Generator().manual_seed(self.seed + self.dist.rank)

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self._amp_request
        if amp == "off":
            return None
        if amp == "auto":
            if self.device.type != "cuda":
                return None
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16

    # -- state ----------------------------------------------------------------------------------------
    def _state(self, step: int, epoch: int, offset: int, wall: float, metrics: dict) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": list(_py_rng_state())}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": STATE_FORMAT,
            "method": self.recipe.name,
            "model_config": json.dumps(self.model.config, sort_keys=True),
            "recipe_config": json.dumps(self.recipe.config, sort_keys=True),
            "step": step,
            "epoch": epoch,
            "offset": offset,
            "wall_time_s": wall,
            "metrics": json.dumps(metrics),
            "modules": {k: m.state_dict() for k, m in self.raw_modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": rng,
        }

    def _load_state(self, path: Path) -> dict:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling failure: the file is corrupt or not ours
            raise CheckpointError(f"cannot read the training state ({exc}); start afresh with --no-resume", path) from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError("not a napari-medtrans training state; start afresh with --no-resume", path)
        mine = json.dumps(self.model.config, sort_keys=True)
        if state["method"] != self.recipe.name or state["model_config"] != mine:
            raise CheckpointError(
                f"was written by a {state['method']} run with model config {state['model_config']}; this run is "
                f"{self.recipe.name} with {mine}. Use another output folder or --no-resume to start afresh",
                path,
            )
        try:
            for k, m in self.raw_modules.items():
                m.load_state_dict(state["modules"][k])
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"training state does not fit this run ({exc})", path) from exc
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.dist.enabled:
            # Every rank needs its own random stream; continue from a seed derived from the step.
            _seed_everything(self.seed + 1000003 * int(state["step"]) + self.dist.rank)
        else:
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            random.setstate(_as_py_rng_state(state["rng"]["python"]))
        return state

    def _save(self, step, epoch, offset, wall, metrics, *, final: bool) -> Path:
        from ..translators.checkpoint import save_checkpoint

        self.out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_torch_save(self._state(step, epoch, offset, wall, metrics), self.out_dir / STATE_FILE)
        path = self.out_dir / (FINAL_CHECKPOINT if final else LAST_CHECKPOINT)
        save_checkpoint(self.model, path, normalisation=self.normalisation,
                        training=self._training_info(step, wall), metrics=metrics)
        return path

    def _training_info(self, step: int, wall: float) -> dict:
        info = {
            "command": " ".join(sys.argv),
            "method": self.recipe.name,
            "recipe": self.recipe.config,
            "steps": step,
            "steps_planned": self.steps,
            "batch_size": self.batch_size,
            "world_size": self.dist.world_size,
            "lr": self.lr,
            "min_lr": self.min_lr,
            "warmup": self.warmup,
            "grad_clip": self.grad_clip,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "device": str(self.device),
            "seed": self.seed,
            "train_slices": len(self.train_ds),
            "val_slices": len(self.val_ds) if self.val_ds is not None else 0,
            "wall_time_s": round(wall, 2),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        for attr in ("subject_ids", "axis", "size"):
            value = getattr(self.train_ds, attr, None)
            if value is not None:
                info["train_subjects" if attr == "subject_ids" else attr] = (
                    list(value) if isinstance(value, (list, tuple)) else value)
        info.update(self.info)
        return info

    # -- validation -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def validate(self) -> dict:
        """PSNR / SSIM / MAE of the model on the validation slices (data range 2 on [-1, 1] images).

        Returns ``{"psnr", "ssim", "mae", "brain_psnr", "brain_ssim", "brain_mae", "slices"}``; the ``brain_*``
        values are computed inside the mask of each slice. Means over slices.
        """
        from ..core.metrics import slice_metrics

        if self.val_ds is None or len(self.val_ds) == 0:
            return {}
        device = getattr(self, "device", None) or next(self.model.parameters()).device
        amp_dtype = getattr(self, "amp_dtype", None)
        ds = self.val_ds
        if self.val_max_slices and len(ds) > self.val_max_slices:
            idx = np.linspace(0, len(ds) - 1, self.val_max_slices).round().astype(int)
            ds = torch.utils.data.Subset(ds, sorted(set(int(i) for i in idx)))
        model = self.model
        was_training = model.training
        model.eval()
        per: dict[str, list[np.ndarray]] = {}
        try:
            for batch in DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=0,
                                    generator=torch.Generator().manual_seed(self.seed)):
                x = batch["input"].to(device)
                y = batch["target"].to(device).float()
                with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                    pred = model.translate(x).image
                pred = pred.float().clamp(-1, 1)
                mask = batch["mask"][:, 0].to(device) if "mask" in batch else None
                for c in range(y.shape[1]):
                    whole = slice_metrics(pred[:, c], y[:, c], axis=0, data_range=2.0)
                    for k, v in whole.items():
                        per.setdefault(k, []).append(v)
                    if mask is not None:
                        brain = slice_metrics(pred[:, c], y[:, c], axis=0, data_range=2.0, mask=mask)
                        for k, v in brain.items():
                            per.setdefault(f"brain_{k}", []).append(v)
        finally:
            model.train(was_training)
        out: dict[str, Any] = {k: _finite_mean(np.concatenate(v)) for k, v in per.items()}
        out["slices"] = len(ds)
        return out

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Run (or resume) training to ``steps`` and write the final checkpoint. Returns a :class:`TrainResult`."""
        self._setup()
        try:
            return self._fit()
        finally:
            if self.dist.owns_group:
                torch.distributed.destroy_process_group()

    def _fit(self) -> TrainResult:
        main = self.dist.main
        state_path = self.out_dir / STATE_FILE
        step = epoch = offset = 0
        wall0 = 0.0
        metrics: dict = {}
        resumed = self.resume and state_path.exists()
        if self.resume and not resumed:
            # Nothing to resume from, yet a model is there (a finished run whose state was removed): never delete
            # a user's model silently. --no-resume says explicitly that the folder may be overwritten.
            existing = [n for n in (FINAL_CHECKPOINT, LAST_CHECKPOINT) if (self.out_dir / n).exists()]
            if existing:
                raise MedtransError(
                    f"holds {', '.join(existing)} but no {STATE_FILE} to resume from; choose a new output "
                    "folder, or pass --no-resume (resume=False) to start again and overwrite it",
                    self.out_dir,
                )
        if resumed:
            state = self._load_state(state_path)
            step, epoch, offset = int(state["step"]), int(state["epoch"]), int(state["offset"])
            wall0 = float(state["wall_time_s"])
            metrics = json.loads(state["metrics"])
        start = step
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not resumed:
                for name in (STATE_FILE, LAST_CHECKPOINT, FINAL_CHECKPOINT):
                    (self.out_dir / name).unlink(missing_ok=True)
        logs = _Logs(self.out_dir, fresh=not resumed, keep_until=step) if main else None
        self.dist.barrier()

        final = self.out_dir / FINAL_CHECKPOINT
        if step >= self.steps and final.exists():
            return TrainResult(final, step, wall0, metrics, self.out_dir / "log.jsonl", self.out_dir / "log.csv",
                               start)

        ctx = _Context(self)
        bar = None
        if main and (self.progress if self.progress is not None else sys.stderr.isatty()):
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps, initial=step, desc=f"train {self.recipe.name}", unit="step",
                       dynamic_ncols=True)
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        n_sum = 0
        per_epoch = len(self.sampler.base) // self.batch_size
        lr = self.lr
        try:
            while step < self.steps:
                if offset >= per_epoch:
                    epoch, offset = epoch + 1, 0
                self.sampler.set_epoch(epoch, skip=offset * self.batch_size)
                for batch in self.loader:
                    lr = cosine_lr(step, self.steps, self.lr, self.min_lr, self.warmup)
                    for opt in self.optimizers.values():
                        for g in opt.param_groups:
                            g["lr"] = lr * g.get("lr_scale", 1.0)
                    batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                             for k, v in batch.items()}
                    for m in self.raw_modules.values():
                        m.train()
                    ctx.step = step
                    losses = self.recipe.training_step(batch, self.modules["model"], self.modules, ctx)
                    if self.scaler is not None:
                        self.scaler.update()
                    step += 1
                    offset += 1
                    for k, v in losses.items():
                        v = torch.as_tensor(v, dtype=torch.float32, device=self.device).detach()
                        sums[k] = sums[k] + v if k in sums else v.clone()
                    n_sum += 1
                    if bar is not None:
                        bar.update(1)

                    do_log = step % self.log_every == 0 or step == self.steps
                    do_val = self.val_ds is not None and ((self.val_every and step % self.val_every == 0)
                                                         or step == self.steps)
                    do_ckpt = self.checkpoint_every and step % self.checkpoint_every == 0 and step < self.steps
                    if do_log or do_val:
                        means = self._mean_losses(sums, n_sum, step)
                        sums, n_sum = {}, 0
                        row = {"event": "train", "step": step, "epoch": epoch,
                               "wall_time_s": round(wall0 + time.perf_counter() - t0, 3), "lr": lr, **means}
                        if do_val:
                            if main:
                                metrics = self.validate()
                                row["event"] = "val"
                                row.update({f"val_{k}": v for k, v in metrics.items() if k != "slices"})
                            self.dist.barrier()
                        if main:
                            logs.write(row)
                            if self.on_log is not None:
                                self.on_log(row)
                            if bar is not None:
                                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                                                 if k in ("loss", "val_psnr") and v is not None})
                    if do_ckpt:
                        if main:
                            self._save(step, epoch, offset, wall0 + time.perf_counter() - t0, metrics, final=False)
                        self.dist.barrier()
                    if step >= self.steps:
                        break
                else:
                    epoch, offset = epoch + 1, 0
        finally:
            if bar is not None:
                bar.close()
        wall = wall0 + time.perf_counter() - t0
        if main:
            path = self._save(step, epoch, offset, wall, metrics, final=True)
        else:
            path = self.out_dir / FINAL_CHECKPOINT
        self.dist.barrier()
        return TrainResult(path, step, wall, metrics, self.out_dir / "log.jsonl", self.out_dir / "log.csv", start)

    def _mean_losses(self, sums: dict[str, torch.Tensor], n: int, step: int) -> dict[str, float]:
        if n == 0:
            return {}
        names = sorted(sums)
        vec = torch.stack([sums[k] for k in names]) / n
        if self.dist.enabled:
            torch.distributed.all_reduce(vec)
            vec /= self.dist.world_size
        values = vec.tolist()
        bad = [k for k, v in zip(names, values) if not math.isfinite(v)]
        if bad:
            raise TrainingDivergedError(
                f"loss {', '.join(bad)} became NaN/infinite by step {step}; lower the learning rate "
                f"(now {self.lr:g}) or turn AMP off",
                self.out_dir,
            )
        return dict(zip(names, values))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _py_rng_state() -> tuple:
    version, internal, gauss = random.getstate()
    return (version, list(internal), gauss)


def _as_py_rng_state(saved) -> tuple:
    version, internal, gauss = saved
    return (int(version), tuple(int(i) for i in internal), gauss)
