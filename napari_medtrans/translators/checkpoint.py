"""The checkpoint format, and ``load_translator`` for every kind of model file.

A napari-medtrans checkpoint is a ``.safetensors`` file: the translator's state dict plus one metadata entry,
``"medtrans"``, holding JSON::

    {"format": "napari-medtrans/checkpoint", "format_version": 1,
     "method": "pix2pix", "config": {...}, "spec": {...TranslatorSpec...},
     "normalisation": {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                       "outputs": {"T2": {"lo": 0.0, "hi": 812.5}}},
     "training": {"command": "...", "data": "...", "steps": 4000, "wall_time_s": 1234.5},
     "metrics": {"psnr": 27.1, "ssim": 0.88},
     "aliases": {"tied.weight": "kept.weight"},
     "package_version": "0.1.0", "torch_version": "2.14.1", "created": "2025-01-01T00:00:00+00:00"}

The metadata is readable without loading a tensor (:func:`read_checkpoint_metadata`). Nothing is ever
unpickled: ``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)`` only and can be converted to
safetensors with :func:`convert_checkpoint`.

:func:`load_translator` dispatches on the file suffix:

- ``.safetensors``: rebuild with ``create_translator(method, **config)`` and load the tensors;
- ``.pt``, ``.pth``: a dict ``{"state_dict": ..., "method": ..., "config": ...}`` read safely (a TorchScript
  archive saved as ``.pt`` is recognised and loaded as TorchScript);
- ``.ts``, ``.torchscript``: TorchScript (:class:`~napari_medtrans.translators.exported.ScriptedTranslator`);
- ``.onnx``: ONNX via onnxruntime (:class:`~napari_medtrans.translators.exported.OnnxTranslator`).

**Directions.** A translator whose class sets ``bidirectional = True`` (HiFi-Syn, DisDiff: one backbone for two
modalities) serves both directions from one checkpoint: ``load_translator(path, direction="T2->T1")`` rebuilds it
with source and target swapped, loads the same tensors, and gives it the normalisation record of that direction
(the output range of the other modality: the trainer stores per-modality statistics under ``"inputs"`` and
``"outputs"``). Asking any other translator for a direction it does not offer raises :class:`CheckpointError`.

**Sidecar rule.** Information that a file cannot carry itself comes from a JSON *sidecar* named after the
whole file name plus ``.json``: ``model.onnx`` -> ``model.onnx.json``, ``weights.pt`` -> ``weights.pt.json``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..core.errors import (
    CheckpointError,
    ConfigMismatchError,
    MethodMismatchError,
    MedtransError,
    UnknownChoiceError,
)
from ..core.weights import safe_torch_load, sha256_file
from .base import Translator, create_translator, meta_device
from .checkpoint_info import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    ONNX_SUFFIXES,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    TORCHSCRIPT_SUFFIXES,
    CheckpointInfo,
    check_config_bounds,
    read_sidecar_object,
    sidecar_path,
    validate_normalisation,
)
from .checkpoint_save import save_checkpoint
from .direction import format_direction, parse_direction, redirect_translator, translator_directions

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "CheckpointInfo",
    "save_checkpoint",
    "read_checkpoint_metadata",
    "load_translator",
    "parse_direction",
    "format_direction",
    "translator_directions",
    "redirect_translator",
    "convert_checkpoint",
    "sidecar_path",
    "validate_normalisation",
    "SAFETENSORS_SUFFIXES",
    "PICKLE_SUFFIXES",
    "TORCHSCRIPT_SUFFIXES",
    "ONNX_SUFFIXES",
]

_MAX_HEADER = 100 * 1024 * 1024  # safetensors refuses larger headers too


def _read_safetensors_header(p: Path) -> dict:
    """Parse the safetensors header (JSON) and check that the file holds all the bytes it announces."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError("truncated or not a safetensors file (shorter than its 8-byte header length)", p)
            n = int.from_bytes(head, "little")
            if n <= 0 or n > _MAX_HEADER or n > size - 8:
                raise CheckpointError(
                    f"truncated or not a safetensors file (announces a {n}-byte header in a {size}-byte file)", p
                )
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"cannot read: {exc.strerror or exc}", p) from None
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError("truncated or not a safetensors file (its header is not JSON)", p) from None
    if not isinstance(header, dict):
        raise CheckpointError("not a safetensors file (header is not a JSON object)", p)
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
            tuple(int(s) for s in entry["shape"])
        except (TypeError, KeyError, IndexError, ValueError):
            raise CheckpointError(f"not a safetensors file (bad header entry {key!r})", p) from None
    if 8 + n + end != size:
        raise CheckpointError(
            f"truncated safetensors file: its header announces {8 + n + end} bytes, the file has {size}", p
        )
    return header


def _meta_from_header(p: Path, header: dict, method: str | None) -> dict:
    meta_strs = header.get("__metadata__") or {}
    if METADATA_KEY in meta_strs:
        try:
            meta = json.loads(meta_strs[METADATA_KEY])
        except ValueError:
            raise CheckpointError(f"the {METADATA_KEY!r} metadata is not valid JSON", p) from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"the {METADATA_KEY!r} metadata is not a JSON object", p)
        version = meta.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"written in checkpoint format {version!r}; this napari-medtrans reads up to {FORMAT_VERSION}: "
                "upgrade napari-medtrans",
                p,
            )
        return meta
    side = _read_sidecar_optional(p)
    if side is not None:
        if method is not None and not side.get("method"):
            side["method"] = method
        return side
    if method is not None:
        return {"method": method, "config": {}}
    raise CheckpointError(
        f"has no napari-medtrans metadata (no {METADATA_KEY!r} entry) and no sidecar {sidecar_path(p).name}; "
        "pass method=... or write a sidecar {\"method\": ..., \"config\": {...}}",
        p,
    )


def _read_sidecar_optional(p: Path) -> dict | None:
    side = sidecar_path(p)
    if not side.is_file():
        return None
    return read_sidecar_object(side)


def _info_from_meta(p: Path, meta: Mapping[str, Any], fmt: str, digest: str | None = None) -> CheckpointInfo:
    method = meta.get("method")
    if not isinstance(method, str) or not method:
        raise CheckpointError('metadata lacks "method" (the registry name that rebuilds the model)', p)
    config = meta.get("config") or {}
    if not isinstance(config, dict):
        raise CheckpointError('metadata "config" must be a JSON object', p)
    spec = meta.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise CheckpointError('metadata "spec" must be a JSON object', p)
    return CheckpointInfo(
        path=p,
        sha256=digest or sha256_file(p),
        method=method,
        config=dict(config),
        spec=spec,
        normalisation=validate_normalisation(meta.get("normalisation"), p),
        training=dict(meta.get("training") or {}),
        metrics=dict(meta.get("metrics") or {}),
        package_version=meta.get("package_version"),
        format=fmt,
        raw=dict(meta),
    )


def _is_torchscript_zip(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _kind(p: Path) -> str:
    suffix = p.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in PICKLE_SUFFIXES:
        return "torchscript" if _is_torchscript_zip(p) else "pt"
    if suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    known = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES + TORCHSCRIPT_SUFFIXES + ONNX_SUFFIXES
    raise CheckpointError(f"unknown model file type {p.suffix or '(no suffix)'!r}; known: {', '.join(known)}", p)


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise CheckpointError("no such file", p)
    if not p.is_file():
        raise CheckpointError("not a file", p)
    return p


def read_checkpoint_metadata(path: str | os.PathLike) -> CheckpointInfo:
    """Read what a model file says about itself without loading its tensors.

    For ``.safetensors`` only the JSON header is parsed (and the file size checked against it); exported
    models (``.ts``, ``.onnx``) are described by their sidecar; a ``.pt`` is read safely in full (its
    metadata lives inside the pickle).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    CheckpointInfo

    Raises
    ------
    CheckpointError
        Missing, truncated, not a model file, or lacking the metadata.
    """
    p = _existing(path)
    kind = _kind(p)
    if kind == "safetensors":
        return _info_from_meta(p, _meta_from_header(p, _read_safetensors_header(p), None), "safetensors")
    if kind == "pt":
        obj = safe_torch_load(p)
        meta = _pt_meta(p, obj, None)
        return _info_from_meta(p, meta, "pt")
    from .exported import read_exported_info

    return read_exported_info(p, kind)


# -- loading --------------------------------------------------------------------------------------------
def _resolve_device(device: str | torch.device) -> torch.device:
    from ..core.engine import resolve_device  # "auto", "cuda:1", ...; clear error for a missing device

    return resolve_device(device)


def _build(p: Path, info: CheckpointInfo, expected_method: str | None) -> Translator:
    if expected_method is not None and expected_method != info.method:
        raise MethodMismatchError(p, expected=expected_method, found=info.method)
    try:
        model = create_translator(info.method, **_with_legacy_config(info.method, info.config))
    except UnknownChoiceError as exc:
        raise CheckpointError(
            f"was written by method {info.method!r}, which is not installed here; known: {', '.join(exc.choices)}",
            p,
            method=info.method,
        ) from None
    except (TypeError, ValueError) as exc:
        raise ConfigMismatchError(
            f"config {info.config} does not fit method {info.method!r}: {exc}", p, method=info.method
        ) from None
    if info.spec:
        saved = info.spec
        for field in ("inputs", "outputs"):
            if field in saved and tuple(saved[field]) != tuple(getattr(model.spec, field)):
                raise ConfigMismatchError(
                    f"method {info.method!r} with config {info.config} builds a model with {field} "
                    f"{list(getattr(model.spec, field))}, but the checkpoint was saved with {list(saved[field])}",
                    p,
                    method=info.method,
                )
    return model


#: Bounds on integer config values, checked before any network is built (a crafted "depth": 1000000 would
#: otherwise build for minutes, "width": 1000000 try to allocate terabytes). Keys are matched by name; every
#: shipped and documented configuration is far inside them.
def _build_checked(
    p: Path, info: CheckpointInfo, method: str | None, shapes: Mapping[str, tuple[int, ...]],
    aliases: Mapping[str, str], strict: bool,
) -> Translator:
    """Build the model only after its config is bounded and its tensor shapes, computed on the "meta" device
    (no memory, no arithmetic), match the file's. Then build it for real."""
    check_config_bounds(p, info.method, info.config)
    try:
        with meta_device():
            skeleton = _build(p, info, method)
    except MedtransError:
        raise
    except (RuntimeError, NotImplementedError, OverflowError, MemoryError, IndexError, KeyError) as exc:
        raise ConfigMismatchError(
            f"config {info.config} cannot build a {info.method!r} model ({type(exc).__name__}: {exc})",
            p,
            method=info.method,
        ) from None
    _fit(p, skeleton, info.method, shapes, aliases, strict)
    del skeleton
    return _build(p, info, method)


def _check_finite_weights(p: Path, state: Mapping[str, torch.Tensor]) -> None:
    """A checkpoint with NaN or infinite weights would write NaN images: refuse it when it is loaded."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"holds non-finite (NaN/inf) weights in {len(bad)} tensor(s), e.g. {', '.join(bad[:3])}; the training "
            "diverged or the file is damaged",
            p,
        )


def _with_legacy_config(method: str, config: Mapping[str, Any]) -> dict:
    """``config`` with the values a factory's ``legacy_config`` names for keys a saved config lacks: a checkpoint
    written before a key existed was made with those values, whatever a new model's default is now."""
    from .base import translator_factory

    try:
        legacy = getattr(translator_factory(method), "legacy_config", None) or {}
    except UnknownChoiceError:
        legacy = {}
    return {**legacy, **config}


def _fit(
    p: Path,
    model: Translator,
    method: str,
    shapes: Mapping[str, tuple[int, ...]],
    aliases: Mapping[str, str],
    strict: bool,
) -> None:
    """Raise ConfigMismatchError when the file's tensors do not fit the model."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    missing = [k for k in want if k not in shapes and aliases.get(k) not in shapes]
    unexpected = [k for k in shapes if k not in want]
    wrong = [(k, shapes[k], want[k]) for k in want if k in shapes and tuple(shapes[k]) != want[k]]
    if not wrong and not (strict and (missing or unexpected)):
        return

    def few(items: list, fmt) -> str:
        text = ", ".join(fmt(i) for i in items[:5])
        return text + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    parts = []
    if wrong:
        parts.append("shape mismatch " + few(wrong, lambda w: f"{w[0]}: checkpoint {list(w[1])} vs model {list(w[2])}"))
    if strict and missing:
        parts.append("missing from checkpoint " + few(missing, str))
    if strict and unexpected:
        parts.append("not in the model " + few(unexpected, str))
    raise ConfigMismatchError(
        f"tensors do not fit method {method!r} with config {model.config}: " + "; ".join(parts),
        p,
        method=method,
        missing=missing,
        unexpected=unexpected,
        mismatched=[w[0] for w in wrong],
    )


def _finish(model: Translator, info: CheckpointInfo, device: torch.device) -> Translator:
    model.to(device)
    model.eval()
    model.checkpoint_info = info
    model.normalisation = info.normalisation
    return model


def _load_safetensors(p: Path, method: str | None, device: torch.device, strict: bool) -> Translator:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header = _read_safetensors_header(p)
    info = _info_from_meta(p, _meta_from_header(p, header, method), "safetensors")
    shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    aliases = dict(info.raw.get("aliases") or {})
    model = _build_checked(p, info, method, shapes, aliases, strict)
    try:
        state = load_file(p, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"truncated or not a safetensors file ({exc})", p) from None
    _check_finite_weights(p, state)
    _load_into(p, model, state, aliases)
    return _finish(model, info, device)


def _load_into(p: Path, model: Translator, state: dict, aliases: Mapping[str, str]) -> None:
    want = model.state_dict()
    for dropped, kept in aliases.items():
        if dropped in want and dropped not in state and kept in state:
            state[dropped] = state[kept]
    try:
        model.load_state_dict({k: v for k, v in state.items() if k in want}, strict=False)
    except RuntimeError as exc:
        raise ConfigMismatchError(f"tensors do not fit method {model.spec.method!r}: {exc}", p) from None


_PT_META_KEYS = ("method", "config", "spec", "normalisation", "training", "metrics", "package_version")


def _pt_meta(p: Path, obj: Any, method: str | None) -> dict:
    side = _read_sidecar_optional(p) or {}
    if isinstance(obj, Mapping) and "state_dict" in obj:
        meta = {k: obj[k] for k in _PT_META_KEYS if k in obj}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        meta = {}
    else:
        raise CheckpointError(
            "a .pt/.pth checkpoint must be a dict with 'state_dict' (and 'method', 'config'), "
            f"or a plain state dict; found a {type(obj).__name__}",
            p,
        )
    merged = {**side, **{k: v for k, v in meta.items() if v is not None}}
    if not merged.get("method") and method is not None:
        merged["method"] = method
    if not merged.get("method"):
        raise CheckpointError(
            "does not say which method it holds: save {'state_dict': ..., 'method': ..., 'config': {...}}, "
            f"pass method=..., or write a sidecar {sidecar_path(p).name} with {{\"method\": ..., \"config\": {{...}}}}",
            p,
        )
    try:
        return json.loads(json.dumps(merged))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"metadata next to the state dict is not plain data ({exc})", p) from None


def _load_pickle(p: Path, method: str | None, device: torch.device, strict: bool) -> Translator:
    obj = safe_torch_load(p)
    meta = _pt_meta(p, obj, method)
    info = _info_from_meta(p, meta, "pt")
    state = obj["state_dict"] if "state_dict" in obj else obj
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("'state_dict' must map names to tensors", p)
    state = dict(state)
    model = _build_checked(p, info, method, {k: tuple(v.shape) for k, v in state.items()}, {}, strict)
    _check_finite_weights(p, state)
    _load_into(p, model, state, {})
    return _finish(model, info, device)


def load_translator(
    path: str | os.PathLike,
    *,
    method: str | None = None,
    device: str | torch.device = "cpu",
    strict: bool = True,
    direction: str | None = None,
) -> Translator:
    """Load any model file as a ready-to-run translator (eval mode).

    Parameters
    ----------
    path : path-like
        ``.safetensors`` checkpoint, ``.pt``/``.pth`` state dict, ``.ts``/``.torchscript`` TorchScript or
        ``.onnx`` file (the last two with a sidecar ``<file>.json``).
    method : str, optional
        The method the caller expects; a file of another method raises :class:`MethodMismatchError`. For a
        ``.pt`` or a foreign ``.safetensors`` without metadata it names the method to build.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``.
    strict : bool
        Missing or unexpected tensors raise (shape mismatches always raise).
    direction : str, optional
        ``"SRC->DST"`` (or ``"SRC:DST"``, several inputs joined by ``+``): the direction to translate in. None
        or the checkpoint's own direction loads it as saved; the other direction of a two-modality translator
        (``bidirectional = True``) is built from the same tensors (see :func:`redirect_translator`).

    Returns
    -------
    Translator
        With attributes ``checkpoint_info`` (:class:`CheckpointInfo`) and ``normalisation`` (dict or None).

    Raises
    ------
    CheckpointError
        Missing, truncated or unknown file; :class:`MethodMismatchError`, :class:`ConfigMismatchError` and
        :class:`~napari_medtrans.core.errors.UnsafeCheckpointError` are subclasses.
    """
    p = _existing(path)
    wanted = None if direction is None else parse_direction(direction)  # a typo fails before any loading
    dev = _resolve_device(device)
    kind = _kind(p)
    if kind == "safetensors":
        model = _load_safetensors(p, method, dev, strict)
    elif kind == "pt":
        model = _load_pickle(p, method, dev, strict)
    else:
        from .exported import OnnxTranslator, ScriptedTranslator

        cls = ScriptedTranslator if kind == "torchscript" else OnnxTranslator
        model = cls.load(p, device=dev)
        if method is not None and method != model.spec.method:
            raise MethodMismatchError(p, expected=method, found=model.spec.method)
    if wanted is None:
        return model
    return redirect_translator(model, format_direction(*wanted), where=p)


def convert_checkpoint(
    pt_path: str | os.PathLike, out_path: str | os.PathLike, *, method: str | None = None, strict: bool = True
) -> Path:
    """Convert a ``.pt``/``.pth`` checkpoint (read safely) into a ``.safetensors`` checkpoint.

    Parameters
    ----------
    pt_path : path-like
        Source; see :func:`load_translator` for what it must hold.
    out_path : path-like
        Destination ending in ``.safetensors``.
    method : str, optional
        Method name when the source does not carry one (nor its sidecar).
    strict : bool
        As in :func:`load_translator`.

    Returns
    -------
    Path
        The written checkpoint; its ``training["converted_from"]`` names the source file and its sha256.
    """
    src = _existing(pt_path)
    if _kind(src) != "pt":
        raise CheckpointError("convert_checkpoint reads .pt/.pth state dicts only", src)
    model = load_translator(src, method=method, strict=strict)
    info: CheckpointInfo = model.checkpoint_info
    training = dict(info.training)
    training["converted_from"] = {"file": src.name, "sha256": info.sha256}
    return save_checkpoint(model, out_path, normalisation=info.normalisation, training=training, metrics=info.metrics)
