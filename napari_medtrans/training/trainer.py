"""One generic trainer for every method: the recipe says what a step is, the trainer does the rest.

What it does
------------
* AdamW optimisers as the recipe specifies them, a cosine learning-rate schedule from ``lr`` down to
  ``min_lr`` (after an optional linear warm-up), gradient clipping by norm.
* Mixed precision (``amp="auto"``): on CUDA bf16 where supported, else fp16 with a GradScaler; on a CPU bf16 only
  where it computes bf16 in hardware (:func:`~napari_medtrans.core.device.cpu_has_native_bf16`), else fp32:
  emulated bf16 is far slower (an MRNet step took 1.5 s in bf16 and 0.13 s in fp32 on an AVX2-only CPU).
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

import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..core.allocator import keep_large_buffers
from ..core.device import EMULATED_BF16_WARNING, cpu_has_native_bf16
from ..core.errors import MedtransError, UnknownChoiceError
from ..translators.base import Translator
from .distributed import _dist_from_env, _resolve_device, _ResumableSampler
from .recipes import Recipe, RecipeParts, get_recipe
from .run_log import _Logs
from .step_context import _Context
from .training_state import (
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    STATE_FILE,
    _atomic_torch_save,
    _seed_everything,
    restore_training_state,
    training_state,
)
from .validation import validate_slices

__all__ = ["Trainer", "TrainResult", "TrainingDivergedError", "cosine_lr", "STATE_FILE", "FINAL_CHECKPOINT"]

# Re-exported: these names were defined or imported here before the split (distributed.py, run_log.py,
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
        Mixed precision; "auto" is bf16 (else fp16) on CUDA, bf16 on a CPU with native bf16, else off.
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
        if self.amp_dtype == torch.bfloat16 and self.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn(EMULATED_BF16_WARNING, UserWarning, stacklevel=2)
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
            if self.device.type == "cpu":
                return torch.bfloat16 if cpu_has_native_bf16() else None
            if self.device.type != "cuda":
                return None
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16

    # -- state ----------------------------------------------------------------------------------------
    def _state(self, step: int, epoch: int, offset: int, wall: float, metrics: dict) -> dict:
        return training_state(self.recipe, self.model, self.raw_modules, self.optimizers, self.scaler, step, epoch,
                              offset, wall, metrics)

    def _load_state(self, path: Path) -> dict:
        return restore_training_state(path, self.recipe, self.model, self.raw_modules, self.optimizers,
                                      self.scaler, self.dist, self.seed)

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
        if self.val_ds is None or len(self.val_ds) == 0:
            return {}
        device = getattr(self, "device", None) or next(self.model.parameters()).device
        return validate_slices(self.model, self.val_ds, device=device, amp_dtype=getattr(self, "amp_dtype", None),
                               batch_size=self.batch_size, seed=self.seed, max_slices=self.val_max_slices)

    # -- the loop -------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Run (or resume) training to ``steps`` and write the final checkpoint. Returns a :class:`TrainResult`."""
        keep_large_buffers()  # large activations without page faults (core/allocator.py)
        self._setup()
        try:
            return self._fit()
        finally:
            if self.dist.owns_group:
                torch.distributed.destroy_process_group()

    def _resume_point(self) -> tuple[bool, int, int, int, float, dict]:
        """Where the run starts: ``(resumed, step, epoch, offset, wall_time_s, metrics)``, from the training state
        in ``out_dir`` when resuming from one (loaded into the modules), else from the beginning."""
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
        return resumed, step, epoch, offset, wall0, metrics

    def _progress_bar(self, step: int):
        """A tqdm bar on rank 0 when asked for (by default: when stderr is a terminal), else None."""
        if self.dist.main and (self.progress if self.progress is not None else sys.stderr.isatty()):
            from tqdm.auto import tqdm

            return tqdm(total=self.steps, initial=step, desc=f"train {self.recipe.name}", unit="step",
                        dynamic_ncols=True)
        return None

    def _fit(self) -> TrainResult:
        main = self.dist.main
        resumed, step, epoch, offset, wall0, metrics = self._resume_point()
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
        bar = self._progress_bar(step)
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
