""""Any translator": models exported as TorchScript or ONNX, described by a JSON sidecar.

A model trained anywhere runs through the same engine when it is exported to a graph file that maps a float32
batch ``[B, C_in, H, W]`` in [-1, 1] to ``[B, C_out, H, W]`` in [-1, 1] (optionally followed by extra maps),
and a sidecar describes it. The sidecar is named after the full file name plus ``.json``
(``model.onnx`` -> ``model.onnx.json``, ``model.ts`` -> ``model.ts.json``) and holds::

    {"spec": {"method": "my-net", "inputs": ["T1"], "outputs": ["T2"], "image_size": [256, 256],
              "size_multiple": 1, "maps": []},
     "normalisation": {"scheme": "percentile", "lower_pct": 0.5, "upper_pct": 99.5,
                       "outputs": {"T2": {"lo": 0.0, "hi": 900.0}}}}

``spec`` takes :class:`~napari_medtrans.translators.base.TranslatorSpec` fields (only ``method`` is
required); ``normalisation`` is optional. Graph outputs: the first (or the one named ``"image"`` in ONNX) is
the image; further outputs are the maps named in ``spec.maps``, in that order (or by name in ONNX).

TorchScript files are opened with ``torch.jit.load`` (no Python pickle runs); ONNX files with onnxruntime
(an optional dependency: ``pip install napari-medtrans[onnx]``), on CUDA when asked for and available, else
on the CPU. Exported graphs are fixed: ``steps`` and ``generator`` of :meth:`translate` are ignored.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import CheckpointError
from ..core.weights import sha256_file
from .base import TranslationOutput, Translator, TranslatorSpec
from .checkpoint_info import CheckpointInfo, read_sidecar_object, sidecar_path, validate_normalisation

__all__ = [
    "ScriptedTranslator",
    "OnnxTranslator",
    "export_torchscript",
    "export_onnx",
    "read_sidecar",
    "read_exported_info",
]

EXPORT_FORMAT = "napari-medtrans/exported"


# -- sidecar --------------------------------------------------------------------------------------------
def read_sidecar(path: str | os.PathLike) -> tuple[TranslatorSpec, dict | None, dict]:
    """Read and check the sidecar of an exported model file.

    Parameters
    ----------
    path : path-like
        The model file (``model.onnx``); its sidecar is ``model.onnx.json``.

    Returns
    -------
    spec : TranslatorSpec
    normalisation : dict or None
    raw : dict
        The whole sidecar.

    Raises
    ------
    CheckpointError
        Sidecar missing, not JSON, or with missing or bad fields (named in the message).
    """
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(
            f"exported model {Path(path).name} needs a JSON sidecar {side.name} next to it holding "
            '{"spec": {"method": ..., "inputs": [...], "outputs": [...]}, "normalisation": {...}}; it is missing',
            side,
        )
    raw = read_sidecar_object(side)
    spec_d = raw.get("spec")
    if not isinstance(spec_d, dict):
        raise CheckpointError('sidecar lacks a "spec" object (TranslatorSpec fields)', side)
    if not isinstance(spec_d.get("method"), str) or not spec_d.get("method"):
        raise CheckpointError('sidecar "spec" lacks "method" (a name for the model)', side)
    for key in ("inputs", "outputs", "maps"):
        if key in spec_d and (
            not isinstance(spec_d[key], list) or not all(isinstance(s, str) for s in spec_d[key])
        ):
            raise CheckpointError(f'sidecar "spec"."{key}" must be a list of names, got {spec_d[key]!r}', side)
    size = spec_d.get("image_size")
    if size is not None and (
        not isinstance(size, list) or len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size)
    ):
        raise CheckpointError(f'sidecar "spec"."image_size" must be [H, W] or null, got {size!r}', side)
    try:
        spec = TranslatorSpec.from_dict(spec_d)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f'sidecar "spec" is not valid: {exc}', side) from None
    norm = validate_normalisation(raw.get("normalisation"), side)
    return spec, norm, raw


def read_exported_info(path: str | os.PathLike, kind: str) -> CheckpointInfo:
    """:class:`CheckpointInfo` of an exported model (``kind`` is ``"torchscript"`` or ``"onnx"``) from its sidecar."""
    p = Path(path)
    spec, norm, raw = read_sidecar(p)
    return CheckpointInfo(
        path=p,
        sha256=sha256_file(p),
        method=spec.method,
        config={},
        spec=spec.to_dict(),
        normalisation=norm,
        training=dict(raw.get("training") or {}),
        metrics=dict(raw.get("metrics") or {}),
        package_version=raw.get("package_version"),
        format=kind,
        raw=raw,
    )


def _check_input(x: torch.Tensor, spec: TranslatorSpec) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'Argument "x" must be a [B, C, H, W] tensor, got {shape}.')
    if x.shape[1] != len(spec.inputs):
        raise ValueError(
            f'Argument "x" has {x.shape[1]} channels; {spec.method!r} takes {len(spec.inputs)} '
            f'({", ".join(spec.inputs)}).'
        )
    h, w = x.shape[-2:]
    if spec.image_size is not None and (h, w) != tuple(spec.image_size):
        raise ValueError(f'Argument "x" is {h}x{w}; {spec.method!r} takes {spec.image_size[0]}x{spec.image_size[1]}.')
    if h % spec.size_multiple or w % spec.size_multiple:
        raise ValueError(f'Argument "x" is {h}x{w}; sizes must be multiples of {spec.size_multiple}.')


def _to_output(
    outs: Any, spec: TranslatorSpec, path: Path, batch: int, names: Sequence[str] | None = None
) -> TranslationOutput:
    if isinstance(outs, torch.Tensor):
        outs = [outs]
    if isinstance(outs, Mapping):
        named = dict(outs)
    else:
        outs = list(outs)
        if names is not None and "image" in names:
            named = dict(zip(names, outs))
        else:
            named = {"image": outs[0], **dict(zip(spec.maps, outs[1:]))}
            if names is not None:  # ONNX outputs named after the maps win over order
                named.update({n: o for n, o in zip(names, outs) if n in spec.maps})
    if "image" not in named:
        raise CheckpointError(f"the graph returned no image (outputs: {sorted(named)})", path)
    image = named["image"]
    if image.ndim != 4 or image.shape[0] != batch or image.shape[1] != len(spec.outputs):
        raise CheckpointError(
            f"the graph returned an image of shape {list(image.shape)}; the sidecar spec promises "
            f"[{batch}, {len(spec.outputs)}, H, W] ({', '.join(spec.outputs)})",
            path,
        )
    missing = [m for m in spec.maps if m not in named]
    if missing:
        raise CheckpointError(f"the graph does not return the maps {missing} that the sidecar spec lists", path)
    return TranslationOutput(image=image, maps={m: named[m] for m in spec.maps})


# -- TorchScript ----------------------------------------------------------------------------------------
class ScriptedTranslator(Translator):
    """A TorchScript graph (``torch.jit.load``; never a pickle) run as a translator.

    Parameters
    ----------
    module : torch.jit.ScriptModule
    spec : TranslatorSpec
    path : Path, optional
        The file it came from (for error messages).
    """

    def __init__(self, module: torch.jit.ScriptModule, spec: TranslatorSpec, path: Path | None = None):
        super().__init__(spec, {})
        self.graph = module
        self.source_path = Path(path) if path is not None else None
        self.normalisation: dict | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> "ScriptedTranslator":
        """Open a TorchScript file and its sidecar; the model is in eval mode on ``device``."""
        p = Path(path)
        info = read_exported_info(p, "torchscript")
        spec = TranslatorSpec.from_dict(info.spec)
        try:
            module = torch.jit.load(str(p), map_location=torch.device(device))
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"truncated or not a TorchScript file ({first})", p) from None
        model = cls(module, spec, p)
        model.eval()
        model.checkpoint_info = info
        model.normalisation = info.normalisation
        return model

    def _device(self, fallback: torch.device) -> torch.device:
        for t in self.graph.parameters():
            return t.device
        for t in self.graph.buffers():
            return t.device
        return fallback

    def translate(
        self, x: torch.Tensor, *, steps: int | None = None, generator: torch.Generator | None = None
    ) -> TranslationOutput:
        """Run the graph on ``[B, C_in, H, W]`` in [-1, 1]; ``steps`` and ``generator`` are ignored."""
        _check_input(x, self.spec)
        dev = self._device(x.device)
        try:
            outs = self.graph(x.to(device=dev, dtype=torch.float32))
        except RuntimeError as exc:
            raise CheckpointError(
                f"the TorchScript graph failed on input {list(x.shape)}: {str(exc).strip().splitlines()[-1]}",
                self.source_path,
            ) from None
        out = _to_output(outs, self.spec, self.source_path, x.shape[0])
        return TranslationOutput(out.image.to(x.device), {k: v.to(x.device) for k, v in out.maps.items()})


# -- ONNX -----------------------------------------------------------------------------------------------
def _providers(device: torch.device) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        opts = {"device_id": device.index or 0}
        return [("CUDAExecutionProvider", opts), "CPUExecutionProvider"]  # type: ignore[list-item]
    return ["CPUExecutionProvider"]


class OnnxTranslator(Translator):
    """An ONNX graph run by onnxruntime as a translator (numpy in and out; tensors come back on x's device).

    The execution provider is chosen when loading (``device="cuda"`` uses CUDA when onnxruntime has it);
    moving the module with ``.to()`` afterwards does not change it. The module has no parameters; its one
    (empty, non-persistent) buffer lets callers ask ``next(model.buffers()).device``.
    """

    def __init__(self, session: Any, spec: TranslatorSpec, path: Path | None = None):
        super().__init__(spec, {})
        self.session = session
        self.source_path = Path(path) if path is not None else None
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self.normalisation: dict | None = None
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    @property
    def providers(self) -> list[str]:
        """onnxruntime execution providers in use."""
        return list(self.session.get_providers())

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> "OnnxTranslator":
        """Open an ONNX file and its sidecar."""
        p = Path(path)
        info = read_exported_info(p, "onnx")
        spec = TranslatorSpec.from_dict(info.spec)
        try:
            import onnxruntime as ort
        except ImportError:
            raise CheckpointError(
                "cannot run ONNX models: onnxruntime is not installed (pip install 'napari-medtrans[onnx]')", p
            ) from None
        dev = torch.device(device)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(p), sess_options=opts, providers=_providers(dev))
        except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"truncated or not an ONNX model ({first})", p) from None
        if len(session.get_inputs()) != 1:
            raise CheckpointError(
                f"an ONNX translator takes one input [B, C, H, W]; this graph takes {len(session.get_inputs())}", p
            )
        model = cls(session, spec, p)
        model.to(dev if dev.type != "cuda" or "CUDAExecutionProvider" in model.providers else "cpu")
        model.eval()
        model.checkpoint_info = info
        model.normalisation = info.normalisation
        return model

    def translate(
        self, x: torch.Tensor, *, steps: int | None = None, generator: torch.Generator | None = None
    ) -> TranslationOutput:
        """Run the graph on ``[B, C_in, H, W]`` in [-1, 1]; ``steps`` and ``generator`` are ignored."""
        _check_input(x, self.spec)
        arr = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        try:
            outs = self.session.run(None, {self.input_name: arr})
        except Exception as exc:  # onnxruntime's own exception types
            raise CheckpointError(
                f"the ONNX graph failed on input {list(x.shape)}: {str(exc).strip().splitlines()[0]}",
                self.source_path,
            ) from None
        tensors = [torch.from_numpy(o).to(x.device) for o in outs]
        return _to_output(tensors, self.spec, self.source_path, x.shape[0], self.output_names)


# -- export helpers -------------------------------------------------------------------------------------
class _GraphView(nn.Module):
    """``translate`` as a plain forward returning the image, then the maps in ``spec.maps`` order."""

    def __init__(self, model: Translator):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model.translate(x)
        if not self.model.spec.maps:
            return out.image
        return (out.image, *[out.maps[m] for m in self.model.spec.maps])


def _example(model: Translator, example_size: int | Sequence[int] | None) -> tuple[torch.Tensor, tuple[int, int]]:
    if example_size is None:
        if model.spec.image_size is None:
            raise ValueError('Argument "example_size" is needed: the model has no fixed image_size.')
        example_size = model.spec.image_size
    if isinstance(example_size, int):
        example_size = (example_size, example_size)
    size = tuple(int(s) for s in example_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f'Argument "example_size" must be (H, W), got {example_size!r}.')
    if model.spec.image_size is not None and size != tuple(model.spec.image_size):
        raise ValueError(
            f'Argument "example_size" {size} differs from the model\'s image_size {model.spec.image_size}.'
        )
    if size[0] % model.spec.size_multiple or size[1] % model.spec.size_multiple:
        raise ValueError(f'Argument "example_size" {size} must be a multiple of {model.spec.size_multiple}.')
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    return torch.zeros(2, len(model.spec.inputs), *size, device=device).uniform_(-1, 1), size


def _write_sidecar(
    model: Translator, path: Path, size: tuple[int, int], dynamic_size: bool, normalisation: dict | None
) -> Path:
    from .. import __version__

    spec = model.spec.to_dict()
    if not dynamic_size:
        spec["image_size"] = list(size)
    info = getattr(model, "checkpoint_info", None)
    data = {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "spec": spec,
        "normalisation": validate_normalisation(
            normalisation if normalisation is not None else getattr(model, "normalisation", None)
        ),
        "source": {
            "method": model.spec.method,
            "config": json.loads(json.dumps(dict(model.config), default=str)),
            "checkpoint_sha256": getattr(info, "sha256", None),
        },
        "training": dict(getattr(info, "training", None) or {}),
        "metrics": dict(getattr(info, "metrics", None) or {}),
        "package_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    side = sidecar_path(path)
    _atomic_write(side, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2), encoding="utf-8"))
    return side


def _atomic_write(dest: Path, write) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_torchscript(
    model: Translator,
    path: str | os.PathLike,
    example_size: int | Sequence[int] | None = None,
    *,
    dynamic_size: bool = False,
    normalisation: dict | None = None,
) -> Path:
    """Trace a translator to TorchScript and write ``path`` plus its sidecar ``path.json``.

    Parameters
    ----------
    model : Translator
    path : path-like
        Destination, usually ``*.ts``.
    example_size : int or (H, W), optional
        Slice size to trace with; defaults to ``model.spec.image_size``.
    dynamic_size : bool
        Keep the spec's ``image_size`` (None: any size) in the sidecar. Only for networks whose trace does
        not depend on the size (plain convolutions); by default the sidecar fixes ``image_size`` to the
        traced size, and the engine pads or resizes to it.
    normalisation : dict, optional
        Written into the sidecar; defaults to ``model.normalisation`` when present.

    Returns
    -------
    Path
        The TorchScript file.
    """
    p = Path(path)
    x, size = _example(model, example_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(_GraphView(model), x, check_trace=False)
        _atomic_write(p, lambda tmp: torch.jit.save(traced, tmp))
    finally:
        model.train(was_training)
    _write_sidecar(model, p, size, dynamic_size, normalisation)
    return p


def export_onnx(
    model: Translator,
    path: str | os.PathLike,
    example_size: int | Sequence[int] | None = None,
    dynamic_batch: bool = True,
    *,
    dynamic_size: bool = False,
    normalisation: dict | None = None,
    opset: int = 17,
) -> Path:
    """Export a translator to ONNX (TorchScript-based exporter) and write ``path`` plus ``path.json``.

    Parameters
    ----------
    model : Translator
    path : path-like
        Destination, usually ``*.onnx``.
    example_size : int or (H, W), optional
        Slice size to export with; defaults to ``model.spec.image_size``.
    dynamic_batch : bool
        Let the batch dimension vary (the engine batches slices).
    dynamic_size : bool
        Let H and W vary too and keep the spec's ``image_size`` in the sidecar (see
        :func:`export_torchscript`).
    normalisation : dict, optional
        Written into the sidecar; defaults to ``model.normalisation`` when present.
    opset : int
        ONNX opset version.

    Returns
    -------
    Path
        The ONNX file. Inputs are named ``"input"``; outputs ``"image"`` then the map names.
    """
    p = Path(path)
    x, size = _example(model, example_size)
    outputs = ["image", *model.spec.maps]
    axes: dict[str, dict[int, str]] = {}
    for name in ["input", *outputs]:
        dims = {}
        if dynamic_batch:
            dims[0] = "batch"
        if dynamic_size:
            dims.update({2: "height", 3: "width"})
        if dims:
            axes[name] = dims
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _atomic_write(
                p,
                lambda tmp: torch.onnx.export(
                    _GraphView(model),
                    (x,),
                    tmp,
                    input_names=["input"],
                    output_names=outputs,
                    dynamic_axes=axes or None,
                    opset_version=opset,
                    dynamo=False,
                ),
            )
    finally:
        model.train(was_training)
    _write_sidecar(model, p, size, dynamic_size, normalisation)
    return p
