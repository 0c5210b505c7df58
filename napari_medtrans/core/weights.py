"""The local weights store: one folder of pretrained files, a manifest of known weights, safe loading.

The store is ``$MEDTRANS_HOME/weights`` when the environment variable ``MEDTRANS_HOME`` is set, else
``<platform user data folder>/napari-medtrans/weights`` (``platformdirs.user_data_dir("napari-medtrans")``).

Nothing is downloaded behind the user's back: :func:`fetch_weights` runs only when asked (``medtrans weights
fetch NAME``), and offline machines bring files in with :func:`import_weights` (``medtrans weights import
PATH``). Every file is checked against the sha256 the owner published when there is one (torchvision publishes
only the first 8 hex digits of the sha256, in the file name). For files whose owner publishes no checksum the
store records the sha256 seen at import or fetch time, and :func:`verify_weights` later detects any change.

Loading never unpickles code: :func:`load_state_dict` reads ``.safetensors`` directly and ``.pt``/``.pth``
with ``torch.load(weights_only=True)`` only.

The code lives in smaller modules next to this one, and everything is re-exported here:
:mod:`~napari_medtrans.core.weights_manifest` (the manifest and file names),
:mod:`~napari_medtrans.core.weights_store` (folders, records, the state of each file),
:mod:`~napari_medtrans.core.weights_loading` (hashing and safe loading) and
:mod:`~napari_medtrans.core.weights_import` (import and fetch). The functions below that consult the manifest
read this module's ``MANIFEST`` when they are called, so replacing ``weights.MANIFEST`` changes what they see.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import (  # noqa: F401  (re-exported for callers that catch them through this module)
    CheckpointError,
    ChecksumError,
    UnknownChoiceError,
    UnsafeCheckpointError,
    WeightsError,
)
from .weights_import import ProgressFn, fetch_entry, import_file
from .weights_loading import copy_hashing as _copy_hashing  # noqa: F401
from .weights_loading import load_state_dict, safe_torch_load, sha256_file
from .weights_manifest import MANIFEST, KnownWeights, entry_by_filename, find_known, sanitise_filename
from .weights_store import (
    ENV_HOME,
    WeightsStatus,
    custom_files,
    home_dir,
    list_statuses,
    lookup,
    path_in_store,
    resources_dir,
    store_dir,
    verify_statuses,
)
from .weights_store import check_against as _check_against  # noqa: F401
from .weights_store import read_records as _read_records  # noqa: F401
from .weights_store import record as _record  # noqa: F401

__all__ = [
    "KnownWeights",
    "WeightsStatus",
    "MANIFEST",
    "home_dir",
    "resources_dir",
    "store_dir",
    "known_weights",
    "list_weights",
    "import_weights",
    "fetch_weights",
    "verify_weights",
    "weights_path",
    "load_state_dict",
    "safe_torch_load",
    "sha256_file",
    "sanitise_filename",
    "ENV_HOME",
    "ProgressFn",
]


# -- the manifest, read from this module at call time ---------------------------------------------------
def known_weights(name: str) -> KnownWeights:
    """The manifest entry called ``name``; raises :class:`UnknownChoiceError` listing the known names."""
    return find_known(MANIFEST, name)


def _entry_by_filename(filename: str) -> KnownWeights | None:
    return entry_by_filename(MANIFEST, filename)


def _custom_files() -> list[Path]:
    return custom_files(MANIFEST)


def _lookup(name: str) -> KnownWeights | None:
    """Manifest entry for a name; None for a file in the store; UnknownChoiceError otherwise."""
    return lookup(MANIFEST, name)


# -- listing and verifying ------------------------------------------------------------------------------
def list_weights() -> list[WeightsStatus]:
    """State of every manifest entry and of every other file in the store, without hashing.

    ``verified`` is the result of the last check (import, fetch or verify) while the file is unchanged,
    else None.

    Returns
    -------
    list of WeightsStatus
        Manifest entries first (manifest order), then other files by name.
    """
    return list_statuses(MANIFEST)


def verify_weights(name: str | None = None) -> list[WeightsStatus]:
    """Recompute the sha256 of stored files and compare with the published (or recorded) value.

    Parameters
    ----------
    name : str, optional
        A manifest name or the file name of another stored file; None checks every file present.

    Returns
    -------
    list of WeightsStatus
        One per checked file (``verified`` False marks a corrupt or unexpected file).

    Raises
    ------
    UnknownChoiceError
        ``name`` is neither a manifest name nor a file in the store.
    """
    return verify_statuses(MANIFEST, name)


def weights_path(name: str) -> Path:
    """Path of a file in the store.

    Parameters
    ----------
    name : str
        Manifest name (``"vgg16"``, ``"sam2.1_hiera_tiny"``, ...) or the file name of another stored file.

    Returns
    -------
    Path

    Raises
    ------
    WeightsError
        The file is not in the store; the message says how to import or fetch it.
    UnknownChoiceError
        The name is unknown.
    """
    return path_in_store(MANIFEST, name)


# -- import and fetch -----------------------------------------------------------------------------------
def import_weights(path: str | os.PathLike, name: str | None = None, *, overwrite: bool = False) -> Path:
    """Copy a local file into the store (the offline way to provide weights).

    The file is stored under a manifest entry's file name when ``name`` names the entry, or (without
    ``name``) when its sha256 or its file name matches an entry; it is then checked against the published
    sha256. Other files keep their own (sanitised) file name, or ``name`` when given.

    Parameters
    ----------
    path : path-like
        The file to import.
    name : str, optional
        Manifest name, or a plain file name for weights that are not in the manifest.
    overwrite : bool
        Replace a different file of the same name that is not in the manifest.

    Returns
    -------
    Path
        Where the file now is.

    Raises
    ------
    WeightsError
        The file cannot be read, or the name is not a plain file name, or a different file of that name is
        already stored.
    ChecksumError
        The file is meant to be a manifest entry but its sha256 does not match the published one.
    UnknownChoiceError
        ``name`` is close to, but not, a manifest name (a typo).
    """
    return import_file(MANIFEST, path, name, overwrite=overwrite)


def fetch_weights(
    name: str,
    *,
    progress: ProgressFn | None = None,
    url: str | None = None,
    timeout: float = 30,
) -> Path:
    """Download a manifest entry into the store (only ever when called; nothing downloads by itself).

    The file streams into a temporary file in the store, is checked against the published sha256 and is
    then renamed into place, so an interrupted or bad download never leaves a file under the real name.

    Parameters
    ----------
    name : str
        Manifest name.
    progress : callable, optional
        ``progress(done_bytes, total_bytes)`` after each chunk; ``total_bytes`` is 0 when unknown.
    url : str, optional
        Download from this http(s) URL (a mirror) instead of the manifest's.
    timeout : float
        Seconds to wait for the server on connect and on each read.

    Returns
    -------
    Path
        The stored file.

    Raises
    ------
    ChecksumError
        The download does not match the published sha256 (nothing is kept).
    WeightsError
        Network or disk error; the message names the URL and how to import the file instead.
    """
    return fetch_entry(known_weights(name), progress=progress, url=url, timeout=timeout)
