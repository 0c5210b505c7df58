"""Validation during training: PSNR, SSIM and MAE of a translator on validation slices.

Metrics are computed on [-1, 1] images (``data_range=2``) over whole slices, and the same inside the brain mask
of each slice (``brain_*``); each value is the mean over slices of its finite values.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def _finite_mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


@torch.inference_mode()
def validate_slices(model, ds: Dataset, *, device: torch.device, amp_dtype: torch.dtype | None, batch_size: int,
                    seed: int, max_slices: int | None = None) -> dict:
    """PSNR / SSIM / MAE of ``model`` on the slices of ``ds`` (at most ``max_slices``, evenly spaced).

    Returns ``{"psnr", "ssim", "mae", "brain_psnr", "brain_ssim", "brain_mae", "slices"}``; the ``brain_*``
    values are computed inside the mask of each slice (when the items have one). Means over slices.
    """
    from ..core.metrics import slice_metrics

    if max_slices and len(ds) > max_slices:
        idx = np.linspace(0, len(ds) - 1, max_slices).round().astype(int)
        ds = torch.utils.data.Subset(ds, sorted(set(int(i) for i in idx)))
    was_training = model.training
    model.eval()
    per: dict[str, list[np.ndarray]] = {}
    try:
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0,
                                generator=torch.Generator().manual_seed(seed)):
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
