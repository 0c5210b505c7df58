"""Core: numpy/torch only. Never imports Qt, qtpy, superqt or napari (enforced by tests/test_boundaries.py)."""

from .errors import MedtransError
from .volume import MODALITIES, SourceInfo, Volume, normalise_modality

__all__ = ["MedtransError", "MODALITIES", "SourceInfo", "Volume", "normalise_modality"]
