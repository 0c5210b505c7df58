"""Hashing and safe loading of weights files.

Holds :func:`sha256_file` (the checksum every file of the store is compared by), :func:`copy_hashing` (copy a
file while hashing it), :func:`safe_torch_load` (``torch.load(weights_only=True)`` with errors in words) and
:func:`load_state_dict` (``.safetensors`` read directly, anything else through :func:`safe_torch_load`, so
loading never unpickles code). Nothing here knows about the store's folder or its manifest.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UnsafeCheckpointError

__all__ = ["sha256_file", "copy_hashing", "safe_torch_load", "load_state_dict"]

CHUNK = 1 << 20


# -- hashing --------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    str
        64 lower-case hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_hashing(src: Path, dst_dir: Path) -> tuple[Path, str]:
    """Copy ``src`` into a temporary file in ``dst_dir`` while hashing; returns (temp path, sha256)."""
    fd, tmp = tempfile.mkstemp(dir=dst_dir, prefix=".import-", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), h.hexdigest()


# -- safe loading ---------------------------------------------------------------------------------------
def _unpickling_error(exc: Exception, p: Path) -> CheckpointError:
    """The error to raise for a ``pickle.UnpicklingError`` of the restricted loader."""
    text = str(exc)
    detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
    if "GLOBAL" in detail or "global" in detail:
        return UnsafeCheckpointError(
            f"refused: the pickle would import or run code ({detail}); code in a checkpoint is never run. "
            "Ask for a .safetensors file, or convert it where it was made and is trusted",
            p,
        )
    if detail:
        return UnsafeCheckpointError(
            f"refused: the pickle uses features the safe loader does not accept ({detail}); "
            "ask for a .safetensors file, or re-save it with torch.save",
            p,
        )
    return CheckpointError(f"not a readable torch file: {text.splitlines()[0] if text else exc!r}", p)


def safe_torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors in words.

    Raises
    ------
    UnsafeCheckpointError
        The pickle references code (classes or functions outside torch's allow-list) or uses pickle
        features the restricted loader does not accept; nothing ran.
    CheckpointError
        The file is truncated, not a torch file, or cannot be read.
    """
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError("no such file" if not p.exists() else "not a file", p)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(exc, p) from None
    except RuntimeError as exc:
        msg = str(exc)
        if "TorchScript" in msg:
            raise CheckpointError("is a TorchScript archive, not a state dict; load it as TorchScript", p) from None
        raise CheckpointError(f"truncated or not a torch file ({msg.splitlines()[0]})", p) from None
    except (EOFError, KeyError, ValueError, OSError, AttributeError, TypeError, IndexError) as exc:
        raise CheckpointError(f"truncated or not a torch file ({type(exc).__name__}: {exc})", p) from None


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _load_safetensors(p: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not p.is_file():
        raise CheckpointError("no such file" if not p.exists() else "not a file", p)
    try:
        return load_file(p, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"truncated or not a safetensors file ({exc})", p) from None


def load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state dict safely (the timm habit: CPU first, safetensors preferred, never unpickle code).

    ``.safetensors`` is read with safetensors; anything else with ``torch.load(weights_only=True)``. A
    checkpoint that wraps its state dict under ``"state_dict"`` or ``"model"`` (SAM2, MedSAM2) is unwrapped.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    UnsafeCheckpointError
        The pickle carries code.
    CheckpointError
        Truncated, not a weights file, or holds no tensors.
    """
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        return _load_safetensors(p)
    obj = safe_torch_load(p)
    if _is_tensor_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if _is_tensor_dict(obj.get(key)):
                return dict(obj[key])
    raise CheckpointError(
        f"holds no state dict (a {type(obj).__name__}"
        + (f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else "")
        + ")",
        p,
    )
