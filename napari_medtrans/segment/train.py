"""Training the shipped promptable segmenter (:mod:`.promptnet`) on a dataset's tumours.

``medtrans segmenter train --data data/bench --out runs/promptunet`` runs :func:`train_segmenter`. What one
training example is (choices, documented here because no paper describes them):

* a target region: whole tumour (labels 4, 5, 6: oedema, enhancing rim, necrosis) half the time, tumour core
  (5, 6) 30 %, enhancing rim (5) 20 %;
* a slice of one of the subject's contrasts that show the region (:data:`REGION_CONTRASTS`), windowed as the
  segmenter windows it at inference (:func:`~.promptnet.frames01`). Whole-tumour examples come from T2, FLAIR
  and PD only: on T1 and T1c the phantom's oedema does not show (the best threshold inside the box reaches
  Dice 0.54-0.64 there, about what filling the box gives, against 0.85-0.89 on FLAIR), so a box around it can
  only be answered by filling the box. (The first shipped segmenter, trained on every contrast for every region,
  over-includes on FLAIR: 8-16 thousand false-positive voxels against 0.6-1.4 thousand false negatives per test
  subject. Continued without those examples it gained 0.02 Dice with boxes and 0.11 in propagation, and still
  over-includes: its model card.) A subject with none of those contrasts gives any of its own. Core and rim show
  on every contrast and come from all of them;
* a prompt, as a user or the propagation gives it: a box (40 %; each side moved by up to 10 % of the box size and
  2 pixels), a box with clicks (15 %), clicks alone (15 %, whole tumour only: a click alone cannot say which
  compartment), or the region's mask on a slice 1-2 away, half the time grown or shrunk by 1-3 pixels (as a
  prediction can be), with its box grown by 0-6 pixels (30 %: propagation); about one propagation example in three
  sits just past the region's end, where the target is empty;
* a 96 x 96 crop around the prompt, left-right flips, a random gamma (0.7-1.5; ``gamma`` sets the range), a
  random intensity scale (0.85-1.15; ``brightness``), blur (sigma up to 1.2 pixels, a
  third of the time: synthetic images are smoother than acquired ones) and noise.

Loss: binary cross-entropy plus soft Dice on the mask logits. AdamW, cosine learning rate, bf16 autocast on a CPU
that has it. The run saves ``state.pt`` (tensors only, read back with ``weights_only``) every
``checkpoint_every`` steps and continues from it when started again with the same output folder; with
``snapshots`` it also writes the weights of every checkpoint as a segmenter file (``step-NNNNNN.safetensors``),
to choose a step on validation subjects (``medtrans segmenter calibrate`` on each prints its validation score).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core.dataset import load_dataset
from ..core.io.nifti import read_nifti
from .frames import FrameGeometry
from .promptnet import PromptUNet, encode_prompts, frames01, save_promptunet
from .prompts import SlicePrompt, box_of_mask

__all__ = ["REGIONS", "REGION_CONTRASTS", "SegTrainConfig", "train_segmenter", "load_tumour_frames"]

#: Tumour regions (BraTS names) as the project's label values.
REGIONS = {"whole": (4, 5, 6), "core": (5, 6), "enhancing": (5,)}
_REGION_P = (0.5, 0.3, 0.2)
_CONTRASTS = ("T1", "T2", "FLAIR", "T1c", "PD")
#: The contrasts a region's training examples are drawn from (None: any); see the module notes.
REGION_CONTRASTS: dict[str, tuple[str, ...] | None] = {"whole": ("T2", "FLAIR", "PD"), "core": None,
                                                      "enhancing": None}


@dataclasses.dataclass
class SegTrainConfig:
    steps: int = 3000
    batch_size: int = 16
    crop: int = 96
    lr: float = 2e-3
    min_lr: float = 2e-5
    width: int = 16
    depth: int = 4
    seed: int = 0
    threads: int = 1
    amp: str = "auto"  # auto: bf16 on a CPU with native bf16, else fp32
    checkpoint_every: int = 250
    log_every: int = 50
    contrasts: tuple[str, ...] = _CONTRASTS
    #: Start from this segmenter file's weights (a continuation with a new schedule); its width and depth win.
    init: str | None = None
    #: The contrasts whole-tumour examples come from in this run (None: REGION_CONTRASTS["whole"]).
    whole_contrasts: tuple[str, ...] | None = None
    #: Range of the random gamma applied to the windowed image (see the module notes).
    gamma: tuple[float, float] = (0.7, 1.5)
    #: Range of the random intensity scale applied after the gamma (see the module notes).
    brightness: tuple[float, float] = (0.85, 1.15)
    #: Also write the weights at every checkpoint as ``step-NNNNNN.safetensors`` (a segmenter file).
    snapshots: bool = False


@dataclasses.dataclass
class _Subject:
    id: str
    frames: dict[str, np.ndarray]  # contrast -> uint8 [S, H, W]
    labels: np.ndarray  # uint8 [S, H, W], project values


def load_tumour_frames(data, split: str | Sequence[str] = "train", contrasts: Sequence[str] = _CONTRASTS,
                       log: Callable[[str], None] | None = None) -> list[_Subject]:
    """The subjects of ``split`` that have tumour labels, as windowed uint8 frames and label frames."""
    ds = load_dataset(data)
    out = []
    for subj in ds.split(split):
        if not subj.labels:
            continue
        lab_vol = read_nifti(ds.path(subj.labels))
        labels = np.rint(ds.convert_labels(lab_vol.data, ds.path(subj.labels))).astype(np.uint8)
        if not np.isin(labels, REGIONS["whole"]).any():
            continue
        geom = FrameGeometry.of(lab_vol)
        frames = {}
        for c in contrasts:
            if c in subj.images:
                vol = read_nifti(ds.path(subj.images[c]))
                f01, _ = frames01(vol, geom)
                frames[c] = np.rint(f01 * 255).astype(np.uint8)
        if frames:
            out.append(_Subject(subj.id, frames, np.ascontiguousarray(geom.to_frames(labels))))
    if log:
        log(f"{len(out)} subjects with tumours in split {split!r}")
    return out


def _jitter_box(box, rng, shape):
    x0, y0, x1, y1 = box
    w, h = x1 - x0 + 1, y1 - y0 + 1
    d = [rng.uniform(-0.1, 0.1) * s + rng.uniform(-2, 2) for s in (w, h, w, h)]
    H, W = shape
    x0, x1 = np.clip([x0 + d[0], x1 + d[2]], 0, W - 1)
    y0, y1 = np.clip([y0 + d[1], y1 + d[3]], 0, H - 1)
    return (float(min(x0, x1)), float(min(y0, y1)), float(max(x0, x1)), float(max(y0, y1)))


def _sample_points(mask, rng, n):
    ys, xs = np.nonzero(mask)
    if ys.size == 0 or n == 0:
        return []
    idx = rng.choice(ys.size, size=min(n, ys.size), replace=False)
    return [(float(xs[i]), float(ys[i])) for i in idx]


def _example(subjects, rng, crop, info: dict | None = None, whole_contrasts: Sequence[str] | None = None,
             gamma: tuple[float, float] = (0.7, 1.5), brightness: tuple[float, float] = (0.85, 1.15)):
    """One (input [5, crop, crop], target [crop, crop]) pair (see the module notes); ``info`` (a dict, if given)
    receives the region and contrast drawn; ``whole_contrasts`` overrides ``REGION_CONTRASTS["whole"]``."""
    subj = subjects[rng.integers(len(subjects))]
    region = list(REGIONS)[rng.choice(3, p=_REGION_P)]
    region_mask = np.isin(subj.labels, REGIONS[region])
    present = np.flatnonzero(region_mask.reshape(region_mask.shape[0], -1).any(axis=1))
    if present.size == 0:
        region = "whole"
        region_mask = np.isin(subj.labels, REGIONS[region])
        present = np.flatnonzero(region_mask.reshape(region_mask.shape[0], -1).any(axis=1))
    allowed = tuple(whole_contrasts) if region == "whole" and whole_contrasts else REGION_CONTRASTS.get(region)
    choices = [c for c in subj.frames if allowed is None or c in allowed] or list(subj.frames)
    contrast = choices[rng.integers(len(choices))]
    if info is not None:
        info.update(region=region, contrast=contrast)
    kind = rng.choice(["box", "box+points", "points", "prior"], p=[0.4, 0.15, 0.15, 0.3])
    if kind == "points" and region != "whole":
        kind = "box+points"
    s = int(present[rng.integers(present.size)])
    prior = None
    extra_box = None
    if kind == "prior":
        if rng.random() < 0.35:  # just past the end: the neighbour has the region, this slice does not
            s = int(present[0] - 1) if rng.random() < 0.5 else int(present[-1] + 1)
            s = int(np.clip(s, 0, region_mask.shape[0] - 1))
            src = s + 1 if s < present[0] else s - 1
        else:
            src = int(np.clip(s + rng.choice([-2, -1, 1, 2]), 0, region_mask.shape[0] - 1))
        prior = _perturb(region_mask[src], rng)  # the propagated mask is a model's, not the truth
        extra_box = box_of_mask(prior, float(rng.uniform(0, 6))) if prior.any() else None
    target = region_mask[s]
    image = subj.frames[contrast][s].astype(np.float32) / 255.0
    shape = image.shape
    prompt = None
    if kind in ("box", "box+points", "points"):
        box = _jitter_box(box_of_mask(target), rng, shape) if kind != "points" else None
        pts, labs = [], []
        if kind != "box":
            pos = _sample_points(target, rng, int(rng.integers(1, 4)))
            outside = ~target
            if box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in box)
                inbox = np.zeros_like(target)
                inbox[y0:y1 + 1, x0:x1 + 1] = True
                if (inbox & outside).any():
                    outside = inbox & outside
            neg = _sample_points(outside & (subj.frames[contrast][s] > 0), rng, int(rng.integers(0, 3)))
            pts, labs = pos + neg, [1] * len(pos) + [0] * len(neg)
        prompt = SlicePrompt(s, points=pts, labels=labs, box=box)
    x = encode_prompts(_augment(image, rng, gamma, brightness), prompt, prior, extra_box=extra_box)
    # a crop that holds the prompt's centre
    ref = target if target.any() else (prior if prior is not None else target)
    ys, xs = np.nonzero(ref) if ref.any() else (np.array([shape[0] // 2]), np.array([shape[1] // 2]))
    cy, cx = int(ys.mean()), int(xs.mean())
    H, W = shape
    ph, pw = max(0, crop - H), max(0, crop - W)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
        target = np.pad(target, ((0, ph), (0, pw)))
        H, W = x.shape[1:]
    r0 = int(np.clip(cy - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, H - crop))
    c0 = int(np.clip(cx - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, W - crop))
    x = x[:, r0:r0 + crop, c0:c0 + crop]
    t = target[r0:r0 + crop, c0:c0 + crop].astype(np.float32)
    if rng.random() < 0.5:
        x, t = x[:, :, ::-1], t[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(t)


def _perturb(mask, rng):
    """Half the time the prior grown or shrunk by 1-3 pixels, as a previous slice's prediction can be."""
    from scipy import ndimage

    if rng.random() < 0.5:
        return mask
    it = int(rng.integers(1, 4))
    op = ndimage.binary_dilation if rng.random() < 0.6 else ndimage.binary_erosion
    return op(mask, iterations=it)


def _augment(image, rng, gamma=(0.7, 1.5), brightness=(0.85, 1.15)):
    from scipy import ndimage

    img = np.clip(image, 0, 1) ** rng.uniform(*gamma)
    if rng.random() < 1 / 3:
        img = ndimage.gaussian_filter(img, rng.uniform(0.3, 1.2))
    img = img * rng.uniform(*brightness) + rng.normal(0, rng.uniform(0, 0.03), img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _lr(step, cfg):
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))


def train_segmenter(data, out, cfg: SegTrainConfig | None = None, *, command: str = "",
                    log: Callable[[str], None] = print) -> Path:
    """Train (or continue training) the promptable segmenter; returns ``out/model.safetensors``."""
    import torch
    from torch.nn import functional as F

    from ..core.device import EMULATED_BF16_WARNING
    from ..core.engine import cpu_has_native_bf16

    cfg = cfg or SegTrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, int(cfg.threads)))
    subjects = load_tumour_frames(data, "train", cfg.contrasts, log)
    if not subjects:
        from ..core.dataset import DatasetError

        raise DatasetError("no training subject has tumour labels (4, 5, 6); nothing to learn", Path(data))
    torch.manual_seed(cfg.seed)
    if cfg.init:
        from .promptnet import load_promptunet

        model, _meta = load_promptunet(cfg.init)
        cfg = dataclasses.replace(cfg, width=model.width, depth=model.depth, init=str(cfg.init))
        model.train()
        log(f"starting from the weights of {cfg.init} (width {cfg.width}, depth {cfg.depth})")
    else:
        model = PromptUNet(cfg.width, cfg.depth)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    state_path = out / "state.pt"
    step, seconds = 0, 0.0
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        step, seconds = int(st["step"]), float(st["seconds"])
        log(f"resuming at step {step}")
    def _meta(at: int) -> dict[str, str]:
        return {"command": command, "steps": str(at), "seconds": f"{seconds:.0f}",
                "train_subjects": json.dumps([s.id for s in subjects]), "training": json.dumps(dataclasses.asdict(cfg))}

    native_bf16 = cpu_has_native_bf16()
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and native_bf16)
    if use_bf16 and not native_bf16:
        warnings.warn(EMULATED_BF16_WARNING, UserWarning, stacklevel=2)
    rng = np.random.default_rng([cfg.seed, step])
    model.train()
    t_last = time.perf_counter()
    running = []
    while step < cfg.steps:
        xb, tb = zip(*(_example(subjects, rng, cfg.crop, whole_contrasts=cfg.whole_contrasts, gamma=cfg.gamma,
                                brightness=cfg.brightness)
                       for _ in range(cfg.batch_size)))
        x = torch.from_numpy(np.stack(xb))
        t = torch.from_numpy(np.stack(tb))[:, None]
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, t)
        p = torch.sigmoid(logits)
        inter = (p * t).sum(dim=(1, 2, 3))
        dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + t.sum(dim=(1, 2, 3)) + 1)
        loss = bce + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        running.append(float(loss.detach()))
        now = time.perf_counter()
        seconds += now - t_last
        t_last = now
        if step % cfg.log_every == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps}  loss {np.mean(running):.4f}  lr {_lr(step, cfg):.2e}  "
                f"{seconds / step:.3f} s/step")
            running = []
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            tmp = out / "state.pt.part"
            torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": torch.tensor(step),
                        "seconds": torch.tensor(seconds)}, tmp)
            os.replace(tmp, state_path)
            if cfg.snapshots:  # the weights at this step, as a segmenter file (early stopping on validation)
                save_promptunet(model, out / f"step-{step:06d}.safetensors", _meta(step))
    model.eval()
    path = save_promptunet(model, out / "model.safetensors", _meta(cfg.steps))
    log(f"trained {step} steps in {seconds:.0f} s -> {path}")
    return path

