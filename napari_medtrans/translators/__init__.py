"""Translators: the protocol, the registry, the checkpoint format and one module per method."""

from .base import (
    ENTRY_POINT_GROUP,
    TranslationOutput,
    Translator,
    TranslatorSpec,
    create_translator,
    list_translators,
    register_translator,
    translator_factory,
)
from .checkpoint import CheckpointInfo, load_translator, read_checkpoint_metadata, save_checkpoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "TranslationOutput",
    "Translator",
    "TranslatorSpec",
    "create_translator",
    "list_translators",
    "register_translator",
    "translator_factory",
    "CheckpointInfo",
    "load_translator",
    "read_checkpoint_metadata",
    "save_checkpoint",
]
