"""SAM2 / MedSAM2 (and the shipped promptunet) segmentation of volumes: 2D prompts, propagation through the slices, embedding cache.

Importing this package does not import torch or sam2; they load when a model is built or a job runs.
"""

from .cache import EmbeddingCache
from .frames import FrameGeometry, Window, resolve_window
from .models import MODELS, SHIPPED, SegModelSpec, build_model, default_model, get_spec, model_names, weights_available
from .prompts import SlicePrompt, box_of_mask, key_slice, largest_component, prompts_from_mask
from .segmenter import DIRECTIONS, SegmentationResult, Segmenter

__all__ = [
    "DIRECTIONS",
    "EmbeddingCache",
    "FrameGeometry",
    "MODELS",
    "SHIPPED",
    "default_model",
    "weights_available",
    "SegModelSpec",
    "SegmentationResult",
    "Segmenter",
    "SlicePrompt",
    "Window",
    "box_of_mask",
    "build_model",
    "get_spec",
    "key_slice",
    "largest_component",
    "model_names",
    "prompts_from_mask",
    "resolve_window",
]
