"""Writing a napari-medtrans checkpoint: the state dict as ``.safetensors`` with the ``"medtrans"`` JSON metadata
entry described in :mod:`.checkpoint` (which re-exports :func:`save_checkpoint`), written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .base import Translator
from .checkpoint_info import FORMAT, FORMAT_VERSION, METADATA_KEY, SAFETENSORS_SUFFIXES, validate_normalisation

__all__ = ["save_checkpoint"]


def _json_part(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f'Argument "{name}" must be JSON-serialisable: {exc}') from None


def _dedupe_shared(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop exact aliases (tied weights) and make every tensor a contiguous CPU copy safetensors can write."""
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach()
        if t.numel() > 0:
            ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            if ident in seen:
                aliases[key] = seen[ident]
                continue
            seen[ident] = key
        # clone: partial views of one storage must not share memory in the file
        out[key] = t.to("cpu").contiguous().clone()
    return out, aliases


def save_checkpoint(
    model: Translator,
    path: str | os.PathLike,
    *,
    normalisation: dict | None = None,
    training: dict | None = None,
    metrics: dict | None = None,
) -> Path:
    """Write a translator as a ``.safetensors`` checkpoint with its metadata (atomically).

    Parameters
    ----------
    model : Translator
        The model; ``model.spec.method`` and ``model.config`` must rebuild it via ``create_translator``.
    path : path-like
        Destination, ending in ``.safetensors``. Written to a temporary file and renamed into place.
    normalisation : dict, optional
        Intensity statistics (see :func:`validate_normalisation`). Defaults to ``model.normalisation``
        when the model has one (a model loaded from a checkpoint).
    training : dict, optional
        How it was trained: command, data, steps, wall time, ...
    metrics : dict, optional
        Validation metrics.

    Returns
    -------
    Path
        The written file.
    """
    if not isinstance(model, Translator):
        raise TypeError(f'Argument "model" must be a Translator, got {type(model).__name__}.')
    p = Path(path)
    if p.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise ValueError(f'Argument "path" must end in .safetensors, got {p.name!r}.')
    from safetensors.torch import save_file

    from .. import __version__

    if normalisation is None:
        normalisation = getattr(model, "normalisation", None)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": model.spec.method,
        "config": _json_part("config", dict(model.config)),
        "spec": model.spec.to_dict(),
        "normalisation": validate_normalisation(normalisation),
        "training": _json_part("training", dict(training or {})),
        "metrics": _json_part("metrics", dict(metrics or {})),
        "package_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tensors, aliases = _dedupe_shared(model.state_dict())
    meta["aliases"] = aliases
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)})
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


# -- reading metadata -----------------------------------------------------------------------------------
