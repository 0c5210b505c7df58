"""The Translator protocol and the registry every method plugs into.

A translator is a ``torch.nn.Module`` with a :class:`TranslatorSpec` and a ``translate`` method that maps a
batch of input slices ``[B, C_in, H, W]`` in [-1, 1] to a :class:`TranslationOutput` holding the synthetic
batch ``[B, C_out, H, W]`` in [-1, 1] and optional named maps (``"tsm"``, ``"masks"``, ...). Training lives in
``napari_medtrans.training.recipes``, not here.

Methods register with ``@register_translator("name")`` on a factory that takes config keywords and returns a
Translator (the timm pattern: registry + config + thin factory). Third-party packages add factories through
the entry-point group ``napari_medtrans.translators``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..core.errors import UnknownChoiceError

__all__ = [
    "meta_device",
    "translator_class",
    "TranslatorSpec",
    "TranslationOutput",
    "Translator",
    "register_translator",
    "create_translator",
    "list_translators",
    "translator_factory",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "napari_medtrans.translators"


@dataclasses.dataclass(frozen=True)
class TranslatorSpec:
    """What a translator consumes and produces.

    Attributes
    ----------
    method : str
        Registry name, e.g. "pix2pix", "edts-trans".
    inputs : tuple of str
        Input modalities in channel order, e.g. ("T1",) or ("T1", "T2").
    outputs : tuple of str
        Output modalities in channel order, e.g. ("T2",).
    image_size : tuple of int or None
        (H, W) the network expects; None means any size divisible by ``size_multiple``.
    size_multiple : int
        Spatial sizes must be a multiple of this (e.g. 2**depth for a U-Net).
    paired : bool
        Trained on paired data (True) or unpaired (False).
    stochastic : bool
        Different seeds give different outputs (diffusion models, GANs with dropout at test time).
    default_steps : int or None
        Sampling steps used when ``steps`` is None (diffusion models); None for one-shot models.
    maps : tuple of str
        Names of the extra maps ``translate`` returns in :attr:`TranslationOutput.maps`.
    """

    method: str
    inputs: tuple[str, ...] = ("T1",)
    outputs: tuple[str, ...] = ("T2",)
    image_size: tuple[int, int] | None = None
    size_multiple: int = 1
    paired: bool = True
    stochastic: bool = False
    default_steps: int | None = None
    maps: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "maps", tuple(self.maps))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if not self.inputs or not self.outputs:
            raise ValueError('Arguments "inputs" and "outputs" must name at least one modality each.')
        if int(self.size_multiple) < 1:
            raise ValueError('Argument "size_multiple" must be >= 1.')

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["inputs"] = list(self.inputs)
        d["outputs"] = list(self.outputs)
        d["maps"] = list(self.maps)
        d["image_size"] = list(self.image_size) if self.image_size is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TranslatorSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TranslatorSpec fields: {sorted(unknown)}")
        kw = dict(d)
        if kw.get("image_size") is not None:
            kw["image_size"] = tuple(kw["image_size"])
        return cls(**kw)


@dataclasses.dataclass
class TranslationOutput:
    """Result of :meth:`Translator.translate` on one batch.

    ``image`` is ``[B, C_out, H, W]`` in [-1, 1]; ``maps`` holds extra per-pixel maps ``[B, C, H, W]``
    keyed by the names in ``spec.maps`` (for example ``"tsm"`` in [0, 1]).
    """

    image: torch.Tensor
    maps: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


class Translator(nn.Module):
    """Base class for translators. Subclasses set ``self.spec`` and implement :meth:`translate`.

    ``config`` holds the keyword arguments the factory was called with, so that a checkpoint can rebuild the
    same network (``create_translator(spec.method, **config)``).
    """

    spec: TranslatorSpec
    config: dict

    def __init__(self, spec: TranslatorSpec, config: Mapping[str, Any] | None = None):
        super().__init__()
        self.spec = spec
        self.config = dict(config or {})

    def translate(
        self,
        x: torch.Tensor,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> TranslationOutput:  # pragma: no cover - abstract
        """Translate a batch ``[B, C_in, H, W]`` in [-1, 1]."""
        raise NotImplementedError("abstract: subclasses implement translate()")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.translate(x).image


# -- registry -----------------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[..., Translator]] = {}
_LOCK = threading.Lock()
_ENTRY_POINTS_LOADED = False


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """True when two factories are the same definition (a module imported twice, or reloaded)."""
    key = lambda f: (getattr(f, "__module__", None), getattr(f, "__qualname__", None))  # noqa: E731
    return key(a) == key(b) and key(a) != (None, None)


def register_translator(name: str) -> Callable[[Callable[..., Translator]], Callable[..., Translator]]:
    """Decorator: register a factory ``f(**config) -> Translator`` under ``name``.

    Registering the same definition again (the defining module imported a second time or reloaded)
    replaces the entry; a different factory under a taken name raises ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError('Argument "name" must be a non-empty string.')

    def deco(factory: Callable[..., Translator]) -> Callable[..., Translator]:
        with _LOCK:
            old = _REGISTRY.get(name)
            if old is not None and old is not factory and not _same_definition(old, factory):
                raise ValueError(
                    f"a translator named {name!r} is already registered "
                    f"({getattr(old, '__module__', '?')}.{getattr(old, '__qualname__', '?')})"
                )
            _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    # Importing the package modules runs their @register_translator decorators.
    from . import _builtin  # noqa: F401


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    import warnings

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take the registry down
            warnings.warn(f"translator entry point {ep.name!r} failed to load: {exc}", stacklevel=2)
            continue
        if ep.name not in _REGISTRY and callable(obj):
            _REGISTRY[ep.name] = obj


def list_translators() -> list[str]:
    """Names of all registered translators (built-in and from entry points), sorted."""
    _load_builtin()
    _load_entry_points()
    return sorted(_REGISTRY)


def translator_factory(name: str) -> Callable[..., Translator]:
    """The factory registered under ``name``; raises :class:`UnknownChoiceError` with the known names."""
    names = list_translators()
    if name not in _REGISTRY:
        raise UnknownChoiceError("translator", name, names)
    return _REGISTRY[name]


def translator_class(name: str) -> type | None:
    """The Translator class the factory ``name`` returns, from its return annotation; None when it has none.

    Lets a caller ask a class-level question (``bidirectional``) without building a model.
    """
    import typing

    factory = translator_factory(name)
    try:
        cls = typing.get_type_hints(factory).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation is as good as none
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Translator) else None


def create_translator(name: str, **config: Any) -> Translator:
    """Build a translator with random weights: ``create_translator("pix2pix", width=16)``."""
    model = translator_factory(name)(**config)
    if not isinstance(model, Translator):
        raise TypeError(f"factory for {name!r} returned {type(model).__name__}, not a Translator")
    return model


_meta_lock = threading.Lock()
_meta_depth = 0
_tensor_normal = torch.Tensor.normal_


def _normal_skipping_meta(self, *args, **kwargs):
    if self.device.type == "meta":
        return self  # nothing to draw: a meta tensor has no values
    return _tensor_normal(self, *args, **kwargs)


class meta_device:  # noqa: N801 - used like torch.device("meta"), as a context manager
    """``with meta_device():`` builds modules on the "meta" device (shapes only: no memory, no arithmetic).

    Unlike a bare ``torch.device("meta")`` it skips normal-distribution initialisation (``Tensor.normal_``, which
    ``nn.init.normal_`` and ``kaiming_normal_`` call): on meta tensors torch runs that through its Python
    reference implementation, which imports ``torch._dynamo`` and with it triton. That import takes seconds, and
    in a process that has napari's OpenGL canvas open it crashed the interpreter (a segmentation fault while
    listing models in the translate panel). Re-entrant and thread-safe; other tensors draw as usual meanwhile.
    """

    def __enter__(self):
        global _meta_depth
        with _meta_lock:
            if _meta_depth == 0:
                torch.Tensor.normal_ = _normal_skipping_meta
            _meta_depth += 1
        self._device = torch.device("meta")
        self._device.__enter__()
        return self._device

    def __exit__(self, *exc):
        global _meta_depth
        self._device.__exit__(*exc)
        with _meta_lock:
            _meta_depth -= 1
            if _meta_depth == 0:
                torch.Tensor.normal_ = _tensor_normal
        return False
