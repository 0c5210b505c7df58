"""SAM2.1 and MedSAM2 models, built with the sam2 package's own configs and builder, weights from the store.

==========================  ===========================================  ======  =========================
name                        sam2 config                                  input   weights (store name)
==========================  ===========================================  ======  =========================
``sam2.1_hiera_tiny``       configs/sam2.1/sam2.1_hiera_t.yaml            1024   sam2.1_hiera_tiny
``sam2.1_hiera_small``      configs/sam2.1/sam2.1_hiera_s.yaml            1024   sam2.1_hiera_small
``sam2.1_hiera_base_plus``  configs/sam2.1/sam2.1_hiera_b+.yaml           1024   sam2.1_hiera_base_plus
``sam2.1_hiera_large``      configs/sam2.1/sam2.1_hiera_l.yaml            1024   sam2.1_hiera_large
``medsam2``                 sam2.1_hiera_t at 512 (MedSAM2's t512)         512   medsam2_latest
``promptunet-phantom``      the project's promptable U-Net (shipped)     native  resources/segmenters/
==========================  ===========================================  ======  =========================

``promptunet-phantom`` (:mod:`.promptnet`) is not a SAM: a compact network trained by this project on the
benchmark phantom's tumours, shipped with the package, so segmentation works before any weights are imported.
:func:`default_model` picks MedSAM2 once its weights are in the store and the shipped network until then.

MedSAM2's ``sam2.1_hiera_t512`` is the SAM2.1 tiny architecture with a 512-pixel input: the tiny config with
``image_size`` 512 and the rotary position tables of the memory attention sized for 32 x 32 features. The
SAM2.1 configs are read from the installed sam2 package (its ``build_sam2_video_predictor``) with the
post-processing it applies by default except hole filling, which needs sam2's optional CUDA extension.

Weights are read with :func:`napari_medtrans.core.weights.load_state_dict` (``weights_only`` torch loading)
and must fit the model exactly.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..core.errors import ConfigMismatchError, MissingDependencyError, UnknownChoiceError

__all__ = ["SegModelSpec", "MODELS", "SHIPPED", "model_names", "get_spec", "build_model", "import_sam2",
           "default_model", "weights_available", "shipped_path"]

#: The shipped segmenter's name (works without imported weights).
SHIPPED = "promptunet-phantom"

_T512 = (
    "++model.image_size=512",
    "++model.memory_attention.layer.self_attention.feat_sizes=[32,32]",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[32,32]",
)

# build_sam2_video_predictor's post-processing, without fill_hole_area (it needs sam2's CUDA extension).
_POSTPROCESS = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
)


@dataclasses.dataclass(frozen=True)
class SegModelSpec:
    """A segmentation model this package can build.

    Attributes
    ----------
    name : str
        Name used in the GUI and on the command line.
    weights : str
        Weights store name of its checkpoint.
    config : str
        sam2 package config (``configs/sam2.1/...yaml``).
    image_size : int
        Square input size in pixels.
    overrides : tuple of str
        Hydra overrides applied to the config (the 512-pixel variant for MedSAM2).
    description : str
    """

    name: str
    weights: str
    config: str
    image_size: int
    overrides: tuple[str, ...] = ()
    description: str = ""
    kind: str = "sam2"


def _sam21(name: str, cfg: str, description: str) -> SegModelSpec:
    return SegModelSpec(name, name, f"configs/sam2.1/{cfg}", 1024, (), description)


MODELS: dict[str, SegModelSpec] = {
    s.name: s
    for s in (
        _sam21("sam2.1_hiera_tiny", "sam2.1_hiera_t.yaml", "SAM 2.1 Hiera tiny (Meta), 1024 px"),
        _sam21("sam2.1_hiera_small", "sam2.1_hiera_s.yaml", "SAM 2.1 Hiera small (Meta), 1024 px"),
        _sam21("sam2.1_hiera_base_plus", "sam2.1_hiera_b+.yaml", "SAM 2.1 Hiera base+ (Meta), 1024 px"),
        _sam21("sam2.1_hiera_large", "sam2.1_hiera_l.yaml", "SAM 2.1 Hiera large (Meta), 1024 px"),
        SegModelSpec(
            "medsam2",
            "medsam2_latest",
            "configs/sam2.1/sam2.1_hiera_t.yaml",
            512,
            _T512,
            "MedSAM2 (SAM 2.1 tiny fine-tuned on 3D medical images), 512 px",
        ),
        SegModelSpec(
            SHIPPED,
            "promptunet-phantom.safetensors",
            "",
            0,
            (),
            "promptable U-Net trained on the benchmark phantom's tumours (shipped; not a SAM)",
            kind="promptunet",
        ),
    )
}


def shipped_path() -> Path:
    """The shipped segmenter's file (resources/segmenters/promptunet-phantom.safetensors)."""
    from ..core.weights import resources_dir

    return resources_dir() / "segmenters" / MODELS[SHIPPED].weights


def weights_available(name: str) -> bool:
    """Whether ``name`` can be built now: its weights are in the store, or it is the shipped segmenter."""
    spec = get_spec(name)
    if spec.kind == "promptunet":
        return shipped_path().is_file()
    from ..core.errors import WeightsError
    from ..core.weights import weights_path

    try:
        weights_path(spec.weights)
    except WeightsError:
        return False
    # whether sam2 is installed, without importing it (hydra, torch): the GUIs ask this on their thread at start
    import importlib.util

    return importlib.util.find_spec("sam2") is not None


def default_model() -> str:
    """MedSAM2 when its weights are in the store (and sam2 is installed), else the shipped segmenter."""
    return "medsam2" if weights_available("medsam2") else SHIPPED


def model_names() -> list[str]:
    """Names of the models :func:`build_model` knows."""
    return list(MODELS)


def get_spec(name: str) -> SegModelSpec:
    """The spec called ``name``; :class:`UnknownChoiceError` (with a suggestion) otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownChoiceError("segmentation model", name, list(MODELS)) from None


def import_sam2():
    """Import the sam2 package's builder, or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        from sam2 import build_sam  # noqa: F401  (importing sam2 also sets up its hydra configs)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("sam2", "hydra", "omegaconf", "iopath"):
            raise MissingDependencyError("SAM2 / MedSAM2 segmentation", "sam2", extra="segment") from exc
        raise
    return build_sam


def _size_overrides(spec: SegModelSpec, image_size: int | None) -> tuple[list[str], int]:
    if image_size is None or int(image_size) == spec.image_size:
        return list(spec.overrides), spec.image_size
    size = int(image_size)
    if size < 64 or size % 64:
        raise ValueError(f'Argument "image_size" must be a multiple of 64 (at least 64), got {image_size!r}.')
    feat = size // 16
    keep = [o for o in spec.overrides if "image_size" not in o and "feat_sizes" not in o]
    return keep + [
        f"++model.image_size={size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ], size


def build_model(
    name: str = "medsam2",
    *,
    device: Any = "cpu",
    weights_file: str | os.PathLike | None = None,
    random_init: bool = False,
    image_size: int | None = None,
):
    """Build a SAM2 video predictor (it also serves single slices) with its weights.

    Parameters
    ----------
    name : str
        One of :func:`model_names`.
    device : str or torch.device
        Where the model lives (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    weights_file : path-like, optional
        A checkpoint to load instead of the one in the weights store.
    random_init : bool
        Keep the random initial weights (for timing benchmarks only: the masks mean nothing).
    image_size : int, optional
        Another square input size (a multiple of 64), e.g. SAM2.1 tiny at 512.

    Returns
    -------
    sam2.sam2_video_predictor.SAM2VideoPredictor
        In eval mode, on ``device``; ``model.medtrans_weights`` records the checkpoint path (or None).

    Raises
    ------
    UnknownChoiceError
        Unknown model name.
    WeightsError
        The checkpoint is not in the store (the message says how to import it).
    ConfigMismatchError
        The checkpoint's tensors do not fit the architecture.
    MissingDependencyError
        The sam2 package is not installed.
    """
    from ..core.engine import resolve_device
    from ..core.weights import load_state_dict, weights_path

    spec = get_spec(name)
    if spec.kind == "promptunet":
        from .promptnet import load_promptunet

        path = Path(weights_file) if weights_file is not None else shipped_path()
        if random_init:
            from .promptnet import PromptUNet

            model = PromptUNet().to(resolve_device(device)).eval()
        else:
            model, _meta = load_promptunet(path, resolve_device(device))
        model.medtrans_weights = None if random_init else str(path)
        model.medtrans_name = name
        return model
    build_sam = import_sam2()
    overrides, size = _size_overrides(spec, image_size)
    path: Path | None = None
    if not random_init:
        path = Path(weights_file) if weights_file is not None else weights_path(spec.weights)
    dev = resolve_device(device)
    model = build_sam.build_sam2_video_predictor(
        spec.config,
        ckpt_path=None,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=[*overrides, *_POSTPROCESS],
        apply_postprocessing=False,
    )
    if path is not None:
        state = load_state_dict(path)
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensors of the wrong shape
            first = str(exc).strip().splitlines()
            raise ConfigMismatchError(
                f"the checkpoint does not fit {name!r} ({spec.config}, {size} px): "
                f"{first[1].strip() if len(first) > 1 else first[0] if first else exc}",
                path,
            ) from None
        if result.missing_keys or result.unexpected_keys:
            raise ConfigMismatchError(
                f"the checkpoint does not fit {name!r} ({spec.config}, {size} px): "
                f"{len(result.missing_keys)} missing tensors {list(result.missing_keys)[:3]}, "
                f"{len(result.unexpected_keys)} unexpected {list(result.unexpected_keys)[:3]}",
                path,
            )
    model = model.to(dev).eval()
    model.medtrans_weights = str(path) if path is not None else None
    model.medtrans_name = name
    return model
