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
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import (
    CheckpointError,
    ChecksumError,
    UnknownChoiceError,
    UnsafeCheckpointError,
    WeightsError,
    suggest,
)

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
]

ENV_HOME = "MEDTRANS_HOME"
_CHUNK = 1 << 20
_RECORDS = ".records.json"
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

#: The weights the project knows. Hashes are only those the owners publish; none is invented.
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


@dataclasses.dataclass(frozen=True)
class WeightsStatus:
    """State of one file in (or missing from) the store.

    Attributes
    ----------
    name : str
        Manifest name, or the file name for files that are not in the manifest.
    present : bool
        The file is in the store.
    path : Path
        Where the file is (or would be).
    verified : bool or None
        True: the sha256 matches the published one (or, with nothing published, the one recorded when the
        file entered the store). False: it does not. None: not checked (``list_weights`` uses the cached
        result of the last check only while the file's size and time stamp are unchanged).
    check : str
        What ``verified`` compared against: ``"sha256"``, ``"sha256-prefix"``, ``"recorded"`` (the hash seen
        when the file entered the store), ``"none"`` (absent, nothing published) or ``"unchecked"`` (present
        but changed or never checked; run :func:`verify_weights`).
    known : bool
        The name is in the manifest.
    size : int or None
        File size in bytes when present.
    sha256 : str or None
        The file's sha256 when computed (by import, fetch or verify).
    message : str
        A line for people: what is wrong or what to do.
    """

    name: str
    present: bool
    path: Path
    verified: bool | None
    check: str
    known: bool
    size: int | None = None
    sha256: str | None = None
    message: str = ""


# -- folders --------------------------------------------------------------------------------------------
def home_dir() -> Path:
    """The napari-medtrans data folder: ``$MEDTRANS_HOME`` if set, else the platform's user data folder."""
    env = os.environ.get(ENV_HOME, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-medtrans"))


def resources_dir() -> Path:
    """The project's resources/ folder with the shipped models (``MEDTRANS_RESOURCES`` overrides)."""
    env = os.environ.get("MEDTRANS_RESOURCES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "resources"


def store_dir(create: bool = False) -> Path:
    """The weights store folder (``home_dir() / "weights"``).

    Parameters
    ----------
    create : bool
        Make the folder when it does not exist.

    Returns
    -------
    Path
    """
    d = home_dir() / "weights"
    if create:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WeightsError(f"cannot create the weights store: {exc.strerror or exc}", d) from exc
    return d


def known_weights(name: str) -> KnownWeights:
    """The manifest entry called ``name``; raises :class:`UnknownChoiceError` listing the known names."""
    for entry in MANIFEST:
        if entry.name == name:
            return entry
    raise UnknownChoiceError("weights", name, [e.name for e in MANIFEST])


def _entry_by_filename(filename: str) -> KnownWeights | None:
    for entry in MANIFEST:
        if entry.filename == filename:
            return entry
    return None


# -- hashing and names ----------------------------------------------------------------------------------
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
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


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


# -- records of what entered the store ------------------------------------------------------------------
def _records_path() -> Path:
    return store_dir() / _RECORDS


def _read_records() -> dict[str, dict[str, Any]]:
    p = _records_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_records(records: Mapping[str, Any]) -> None:
    d = store_dir(create=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".records-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2, sort_keys=True)
        os.replace(tmp, d / _RECORDS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _record(path: Path, digest: str, verified: bool | None, check: str, source: str) -> None:
    st = path.stat()
    records = _read_records()
    records[path.name] = {
        "sha256": digest,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "verified": verified,
        "check": check,
        "source": source,
        "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_records(records)


def _check_against(
    entry: KnownWeights | None, digest: str, record: Mapping[str, Any] | None
) -> tuple[bool | None, str]:
    """Compare a digest with the published hash, else with the recorded one."""
    if entry is not None and entry.check != "none":
        return entry.matches(digest), entry.check
    if record and record.get("sha256"):
        return digest == record["sha256"], "recorded"
    return None, "none"


# -- listing and verifying ------------------------------------------------------------------------------
def _status(
    name: str, entry: KnownWeights | None, path: Path, records: Mapping[str, Any], *, rehash: bool
) -> WeightsStatus:
    known = entry is not None
    if not path.is_file():
        how = (
            f"not in the store; run 'medtrans weights fetch {name}' (downloads {entry.url}) or download it "
            f"yourself and run 'medtrans weights import PATH --name {name}'"
            if entry is not None
            else "not in the store"
        )
        return WeightsStatus(name, False, path, None, entry.check if entry else "none", known, message=how)
    rec = records.get(path.name)
    if rehash:
        digest = sha256_file(path)
        verified, check = _check_against(entry, digest, rec)
        if check == "none":
            check = "recorded"  # first sight of a file nobody publishes a hash for: remember it
        if verified is not False:
            _record(path, digest, verified, check, (rec or {}).get("source", "verify"))
    else:
        st = path.stat()
        fresh = rec is not None and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
        digest = rec.get("sha256") if fresh else None
        verified = rec.get("verified") if fresh else None
        check = (rec.get("check") if fresh else None) or (entry.check if entry else "none")
        if not fresh:
            check = "unchecked"
    if verified is False:
        against = (
            f"recorded sha256 {rec.get('sha256')}"
            if check == "recorded" and rec
            else (entry.expected() if entry is not None else "expected sha256")
        )
        msg = f"sha256 {digest} does not match the {against}; the file is corrupt or not the expected one"
    elif verified is True:
        msg = "unchanged since it entered the store (no published sha256)" if check == "recorded" else "ok"
    elif check == "recorded":
        msg = "no published sha256; its sha256 is recorded so that later changes show"
    else:
        msg = "not checked since it entered or changed; run 'medtrans weights verify'"
    return WeightsStatus(name, True, path, verified, check, known, path.stat().st_size, digest, msg)


def _custom_files() -> list[Path]:
    d = store_dir()
    if not d.is_dir():
        return []
    known = {e.filename for e in MANIFEST}
    return sorted(
        p for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in known
    )


def list_weights() -> list[WeightsStatus]:
    """State of every manifest entry and of every other file in the store, without hashing.

    ``verified`` is the result of the last check (import, fetch or verify) while the file is unchanged,
    else None.

    Returns
    -------
    list of WeightsStatus
        Manifest entries first (manifest order), then other files by name.
    """
    d = store_dir()
    records = _read_records()
    out = [_status(e.name, e, d / e.filename, records, rehash=False) for e in MANIFEST]
    out += [_status(p.name, None, p, records, rehash=False) for p in _custom_files()]
    return out


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
    d = store_dir()
    records = _read_records()
    if name is not None:
        entry = _lookup(name)
        path = d / (entry.filename if entry else sanitise_filename(name))
        return [_status(name, entry, path, records, rehash=True)]
    out = [_status(e.name, e, d / e.filename, records, rehash=True) for e in MANIFEST if (d / e.filename).is_file()]
    out += [_status(p.name, None, p, records, rehash=True) for p in _custom_files()]
    return out


def _lookup(name: str) -> KnownWeights | None:
    """Manifest entry for a name; None for a file in the store; UnknownChoiceError otherwise."""
    for entry in MANIFEST:
        if entry.name == name:
            return entry
    entry = _entry_by_filename(name)
    if entry is not None:
        return entry
    if (store_dir() / sanitise_filename(name)).is_file():
        return None
    raise UnknownChoiceError("weights", name, [e.name for e in MANIFEST] + [p.name for p in _custom_files()])


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
    entry = _lookup(name)
    path = store_dir() / (entry.filename if entry else sanitise_filename(name))
    if not path.is_file():
        raise WeightsError(
            f"weights {name!r} are not in the store; run 'medtrans weights fetch {name}' to download them from "
            f"{entry.url if entry else 'their owner'}, or download the file yourself and run "
            f"'medtrans weights import PATH --name {name}' (works offline)",
            path,
            name=name,
        )
    return path


# -- import and fetch -----------------------------------------------------------------------------------
def _copy_hashing(src: Path, dst_dir: Path) -> tuple[Path, str]:
    """Copy ``src`` into a temporary file in ``dst_dir`` while hashing; returns (temp path, sha256)."""
    fd, tmp = tempfile.mkstemp(dir=dst_dir, prefix=".import-", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), h.hexdigest()


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
    src = Path(path)
    if not src.is_file():
        raise WeightsError("cannot import: no such file" if not src.exists() else "cannot import: not a file", src)
    entry: KnownWeights | None = None
    target_name: str | None = None
    if name is not None:
        entry = next((e for e in MANIFEST if e.name == name), None)
        if entry is None:
            close = suggest(name, [e.name for e in MANIFEST])
            if close is not None:
                raise UnknownChoiceError("weights", name, [e.name for e in MANIFEST])
            target_name = sanitise_filename(name)
            if not Path(target_name).suffix and src.suffix:
                target_name = sanitise_filename(name + src.suffix)
    d = store_dir(create=True)
    try:
        tmp, digest = _copy_hashing(src, d)
    except OSError as exc:
        raise WeightsError(f"cannot import: {exc.strerror or exc}", src) from exc
    try:
        if entry is None and target_name is None:
            entry = next((e for e in MANIFEST if e.matches(digest) is True and e.check == "sha256"), None)
            entry = entry or _entry_by_filename(src.name)
            entry = entry or next((e for e in MANIFEST if e.matches(digest) is True), None)
            if entry is None:
                target_name = sanitise_filename(src.name)
        if entry is not None:
            ok = entry.matches(digest)
            if ok is False:
                raise ChecksumError(
                    f"sha256 {digest} does not match {entry.expected()} published for {entry.name!r} "
                    f"({entry.url}); the file is corrupt or not the expected one",
                    src,
                    expected=entry.sha256 or entry.sha256_prefix,
                    actual=digest,
                )
            dest = d / entry.filename
        else:
            dest = d / target_name
            if dest.exists() and not overwrite and sha256_file(dest) != digest:
                raise WeightsError(
                    f"a different file named {dest.name!r} is already in the store ({dest}); "
                    "pass overwrite=True (--overwrite) to replace it or choose another --name",
                    src,
                )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    verified, check = _check_against(entry, digest, None)
    _record(dest, digest, verified, check if check != "none" else "recorded", f"import:{src.name}")
    return dest


ProgressFn = Callable[[int, int], None]


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
    entry = known_weights(name)
    src = url or entry.url
    scheme = urllib.parse.urlsplit(src).scheme.lower()
    if scheme not in ("http", "https"):
        raise WeightsError(f"cannot fetch {name!r} from {src!r}: only http and https URLs are fetched")
    hint = (
        f"download {src} on a machine with internet access and run "
        f"'medtrans weights import PATH --name {name}'"
    )
    d = store_dir(create=True)
    fd, tmp_name = tempfile.mkstemp(dir=d, prefix=f".fetch-{entry.filename}-", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    done = 0
    try:
        try:
            req = urllib.request.Request(src, headers={"User-Agent": "napari-medtrans"})
            with urllib.request.urlopen(req, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
                fd = -1
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else (entry.size or 0)
                if progress is not None:
                    progress(0, total)
                while chunk := resp.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except urllib.error.HTTPError as exc:
            raise WeightsError(f"download of {name!r} failed: HTTP {exc.code} {exc.reason} from {src}; {hint}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsError(f"download of {name!r} from {src} failed: {reason}; {hint}") from exc
        finally:
            if fd != -1:
                os.close(fd)
        if length and length.isdigit() and done != int(length):
            raise WeightsError(
                f"download of {name!r} from {src} stopped after {done} of {length} bytes; try again or {hint}"
            )
        digest = h.hexdigest()
        ok = entry.matches(digest)
        if ok is False:
            raise ChecksumError(
                f"download of {name!r} from {src} has sha256 {digest}, expected {entry.expected()}; "
                "the file was discarded",
                expected=entry.sha256 or entry.sha256_prefix,
                actual=digest,
                url=src,
            )
        dest = d / entry.filename
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _record(dest, digest, ok, entry.check if ok is not None else "recorded", f"fetch:{src}")
    return dest


# -- safe loading ---------------------------------------------------------------------------------------
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
        text = str(exc)
        detail = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
        if "GLOBAL" in detail or "global" in detail:
            raise UnsafeCheckpointError(
                f"refused: the pickle would import or run code ({detail}); code in a checkpoint is never run. "
                "Ask for a .safetensors file, or convert it where it was made and is trusted",
                p,
            ) from None
        if detail:
            raise UnsafeCheckpointError(
                f"refused: the pickle uses features the safe loader does not accept ({detail}); "
                "ask for a .safetensors file, or re-save it with torch.save",
                p,
            ) from None
        raise CheckpointError(f"not a readable torch file: {text.splitlines()[0] if text else exc!r}", p) from None
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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not p.is_file():
            raise CheckpointError("no such file" if not p.exists() else "not a file", p)
        try:
            return load_file(p, device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"truncated or not a safetensors file ({exc})", p) from None
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
