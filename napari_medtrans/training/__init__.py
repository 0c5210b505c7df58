"""Training: datasets built from volumes, one generic trainer, and per-method recipes.

* :mod:`.datasets`: :class:`PairedSliceDataset`, :class:`UnpairedSliceDataset` (slices of normalised volumes);
* :mod:`.trainer`: :class:`Trainer` (AMP, gradient clipping, cosine schedule, checkpoints, resume, validation,
  logs, DistributedDataParallel under torchrun);
* :mod:`.recipes`: what one training step is, per method (:func:`get_recipe`, :func:`register_recipe`).

Names are imported on first use, so ``import napari_medtrans.training`` stays light (no torch until needed).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PairedSliceDataset": "datasets",
    "UnpairedSliceDataset": "datasets",
    "normalisation_stats": "datasets",
    "Trainer": "trainer",
    "TrainResult": "trainer",
    "TrainingDivergedError": "trainer",
    "cosine_lr": "trainer",
    "Recipe": "recipes",
    "RecipeParts": "recipes",
    "OptimizerSpec": "recipes",
    "StepContext": "recipes",
    "get_recipe": "recipes",
    "list_recipes": "recipes",
    "register_recipe": "recipes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
