"""The resumable state of a training run: ``out_dir/training_state.pt``, written and read back.

It holds the weights of every module, the optimiser states, the GradScaler, step, epoch and position in the
epoch, and the RNG states; only tensors and plain containers, written atomically and read back with
``torch.load(weights_only=True)``. A state from another method or model configuration is refused with a
:class:`~napari_medtrans.core.errors.CheckpointError`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CheckpointError

STATE_FILE = "training_state.pt"
LAST_CHECKPOINT = "last.safetensors"
FINAL_CHECKPOINT = "model.safetensors"
STATE_FORMAT = "napari-medtrans/training-state/1"


def training_state(recipe, model, raw_modules: Mapping[str, torch.nn.Module],
                   optimizers: Mapping[str, torch.optim.Optimizer], scaler, step: int, epoch: int, offset: int,
                   wall: float, metrics: dict) -> dict:
    """The state of a run at ``step`` (``offset`` batches into ``epoch``) as a dict of tensors and containers."""
    rng = {"torch": torch.get_rng_state(), "python": list(_py_rng_state())}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": STATE_FORMAT,
        "method": recipe.name,
        "model_config": json.dumps(model.config, sort_keys=True),
        "recipe_config": json.dumps(recipe.config, sort_keys=True),
        "step": step,
        "epoch": epoch,
        "offset": offset,
        "wall_time_s": wall,
        "metrics": json.dumps(metrics),
        "modules": {k: m.state_dict() for k, m in raw_modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": rng,
    }


def restore_training_state(path: Path, recipe, model, raw_modules: Mapping[str, torch.nn.Module],
                           optimizers: Mapping[str, torch.optim.Optimizer], scaler, dist, seed: int) -> dict:
    """Read the state at ``path``, check that it belongs to this run, and load it into the modules, optimisers,
    scaler and random generators. Returns the state."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure: the file is corrupt or not ours
        raise CheckpointError(f"cannot read the training state ({exc}); start afresh with --no-resume", path) from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError("not a napari-medtrans training state; start afresh with --no-resume", path)
    mine = json.dumps(model.config, sort_keys=True)
    if state["method"] != recipe.name or state["model_config"] != mine:
        raise CheckpointError(
            f"was written by a {state['method']} run with model config {state['model_config']}; this run is "
            f"{recipe.name} with {mine}. Use another output folder or --no-resume to start afresh",
            path,
        )
    try:
        for k, m in raw_modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"training state does not fit this run ({exc})", path) from exc
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if dist.enabled:
        # Every rank needs its own random stream; continue from a seed derived from the step.
        _seed_everything(seed + 1000003 * int(state["step"]) + dist.rank)
    else:
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        random.setstate(_as_py_rng_state(state["rng"]["python"]))
    return state


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
