"""The manifest of weights the project knows, and the names files get in the store.

Holds :class:`KnownWeights` (one manifest entry and how its published checksum is compared), the default
manifest :data:`MANIFEST`, look-ups of an entry by name or by file name in a given manifest, and
:func:`sanitise_filename` (a file name safe to create inside the store).

Functions here take the manifest as an argument: :mod:`napari_medtrans.core.weights` passes its own
``MANIFEST`` at call time, so replacing ``weights.MANIFEST`` (as the tests do) changes what every public
function of the store sees.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import UnknownChoiceError, WeightsError

__all__ = ["KnownWeights", "MANIFEST", "find_known", "entry_by_name", "entry_by_filename", "sanitise_filename"]

_LICENCE_NOTE = "as published by the owner; check before clinical use"


@dataclasses.dataclass(frozen=True)
class KnownWeights:
    """One entry of the manifest of weights the project knows how to use.

    Attributes
    ----------
    name : str
        Key used on the command line (``medtrans weights fetch NAME``).
    filename : str
        File name inside the store.
    url : str
        Where the owner publishes the file.
    sha256 : str or None
        Full sha256 of the file when published by the owner; None when it is not known with certainty.
    size : int or None
        Size in bytes when known (used for progress when the server sends no length).
    licence : str
        Licence as published by the owner.
    description : str
        What the weights are and what uses them here.
    kind : str
        Model family: ``"vgg16"``, ``"sam2.1"``, ``"medsam2"``.
    sha256_prefix : str or None
        Leading hex digits of the sha256 when only those are published (torchvision's file names).
    extra : mapping
        Family-specific details (for example the SAM2 model config name).
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    description: str
    kind: str
    sha256_prefix: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def check(self) -> str:
        """How a file can be checked: ``"sha256"``, ``"sha256-prefix"`` or ``"none"`` (nothing published)."""
        if self.sha256:
            return "sha256"
        if self.sha256_prefix:
            return "sha256-prefix"
        return "none"

    def matches(self, digest: str) -> bool | None:
        """Whether ``digest`` (a full sha256) is this file's; None when nothing is published to compare."""
        digest = digest.lower()
        if self.sha256:
            return digest == self.sha256.lower()
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix.lower())
        return None

    def expected(self) -> str:
        """The published checksum in words, for error messages."""
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 starting {self.sha256_prefix}"
        return "no published sha256"


_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SAM2_LICENCE = f"Apache-2.0 ({_LICENCE_NOTE})"


def _sam2(size: str, config: str, description: str) -> "KnownWeights":
    """A SAM 2.1 checkpoint as Meta publishes it (the four sizes differ only in these three fields)."""
    return KnownWeights(
        name=f"sam2.1_hiera_{size}",
        filename=f"sam2.1_hiera_{size}.pt",
        url=f"{_SAM2_BASE}sam2.1_hiera_{size}.pt",
        sha256=None,
        size=None,
        licence=_SAM2_LICENCE,
        description=description,
        kind="sam2.1",
        extra={"sam2_config": f"configs/sam2.1/sam2.1_hiera_{config}.yaml"},
    )


#: The weights the project knows. Hashes are only those the owners publish; none is invented.
MANIFEST: list[KnownWeights] = [
    KnownWeights(
        name="vgg16",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256=None,
        sha256_prefix="397923af",
        size=None,
        licence=f"BSD-3-Clause, torchvision ({_LICENCE_NOTE})",
        description="VGG16 ImageNet (torchvision IMAGENET1K_V1, about 528 MB); features for TSM and LPIPS",
        kind="vgg16",
    ),
    _sam2("tiny", "t", "SAM 2.1 Hiera tiny (Meta); segmentation of real versus synthetic images"),
    _sam2("small", "s", "SAM 2.1 Hiera small (Meta)"),
    _sam2("base_plus", "b+", "SAM 2.1 Hiera base+ (Meta)"),
    _sam2("large", "l", "SAM 2.1 Hiera large (Meta)"),
    KnownWeights(
        name="medsam2_latest",
        filename="MedSAM2_latest.pt",
        url="https://huggingface.co/wanglab/MedSAM2/resolve/main/MedSAM2_latest.pt",
        sha256=None,
        size=None,
        licence=f"Apache-2.0 ({_LICENCE_NOTE})",
        description="MedSAM2 latest (Wang lab, SAM 2.1 tiny fine-tuned on 3D medical images, 512 px input)",
        kind="medsam2",
    ),
]


# -- look-ups -------------------------------------------------------------------------------------------
def find_known(manifest: Iterable[KnownWeights], name: str) -> KnownWeights:
    """The entry of ``manifest`` called ``name``; raises :class:`UnknownChoiceError` listing the known names."""
    entries = list(manifest)
    for entry in entries:
        if entry.name == name:
            return entry
    raise UnknownChoiceError("weights", name, [e.name for e in entries])


def entry_by_name(manifest: Iterable[KnownWeights], name: str) -> KnownWeights | None:
    """The entry of ``manifest`` called ``name``, or None."""
    return next((e for e in manifest if e.name == name), None)


def entry_by_filename(manifest: Iterable[KnownWeights], filename: str) -> KnownWeights | None:
    """The entry of ``manifest`` stored under ``filename``, or None."""
    for entry in manifest:
        if entry.filename == filename:
            return entry
    return None


# -- names ----------------------------------------------------------------------------------------------
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


def sanitise_filename(name: str) -> str:
    """A file name safe to create inside the store.

    Directories are never taken from ``name``: names with a path separator, ``..``, an absolute path, a
    drive letter or a NUL byte are refused; other characters outside ``[A-Za-z0-9._+-]`` become ``_``.

    Raises
    ------
    WeightsError
        The name would leave the store or is empty.
    """
    raw = str(name)
    bad = (
        not raw.strip()
        or "\x00" in raw
        or "/" in raw
        or "\\" in raw
        or raw in (".", "..")
        or os.path.isabs(raw)
        or re.match(r"^[A-Za-z]:", raw) is not None
    )
    if bad:
        raise WeightsError(
            f"refused weights name {raw!r}: a name must be a plain file name (no folders, '..' or absolute paths)"
        )
    clean = _SAFE_CHARS.sub("_", raw.strip())
    if clean.startswith("."):  # no hidden files (the store keeps its records in one)
        clean = "_" + clean[1:]
    return clean
