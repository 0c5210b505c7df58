"""The weights store itself: its folders, the records of what entered it, and the state of each file.

Holds the folder functions (:func:`home_dir`, :func:`resources_dir`, :func:`store_dir`), the records file
(``.records.json``: the sha256, size and time stamp seen when a file entered the store or was last
verified), :class:`WeightsStatus` and how it is worked out for one file, and the listing, verifying and
look-up of stored files against a given manifest. :mod:`napari_medtrans.core.weights` passes its
``MANIFEST`` into the functions that take one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UnknownChoiceError, WeightsError
from .weights_loading import sha256_file
from .weights_manifest import KnownWeights, entry_by_filename, sanitise_filename

__all__ = [
    "ENV_HOME",
    "WeightsStatus",
    "home_dir",
    "resources_dir",
    "store_dir",
    "read_records",
    "record",
    "check_against",
    "status",
    "custom_files",
    "lookup",
    "list_statuses",
    "verify_statuses",
    "path_in_store",
]

ENV_HOME = "MEDTRANS_HOME"
_RECORDS = ".records.json"


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


# -- records of what entered the store ------------------------------------------------------------------
def _records_path() -> Path:
    return store_dir() / _RECORDS


def read_records() -> dict[str, dict[str, Any]]:
    """The records file as a dict by file name; empty when it is missing or unreadable."""
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


def record(path: Path, digest: str, verified: bool | None, check: str, source: str) -> None:
    """Remember what ``path`` looked like when it entered the store or was checked (atomic rewrite)."""
    st = path.stat()
    records = read_records()
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


def check_against(
    entry: KnownWeights | None, digest: str, rec: Mapping[str, Any] | None
) -> tuple[bool | None, str]:
    """Compare a digest with the published hash, else with the recorded one."""
    if entry is not None and entry.check != "none":
        return entry.matches(digest), entry.check
    if rec and rec.get("sha256"):
        return digest == rec["sha256"], "recorded"
    return None, "none"


# -- the state of one file ------------------------------------------------------------------------------
def _absent(name: str, entry: KnownWeights | None, path: Path) -> WeightsStatus:
    how = (
        f"not in the store; run 'medtrans weights fetch {name}' (downloads {entry.url}) or download it "
        f"yourself and run 'medtrans weights import PATH --name {name}'"
        if entry is not None
        else "not in the store"
    )
    return WeightsStatus(name, False, path, None, entry.check if entry else "none", entry is not None, message=how)


def _rehashed(
    entry: KnownWeights | None, path: Path, rec: Mapping[str, Any] | None
) -> tuple[str | None, bool | None, str]:
    """(digest, verified, check) from hashing the file now; a file that passes is recorded again."""
    digest = sha256_file(path)
    verified, check = check_against(entry, digest, rec)
    if check == "none":
        check = "recorded"  # first sight of a file nobody publishes a hash for: remember it
    if verified is not False:
        record(path, digest, verified, check, (rec or {}).get("source", "verify"))
    return digest, verified, check


def _cached(
    entry: KnownWeights | None, path: Path, rec: Mapping[str, Any] | None
) -> tuple[str | None, bool | None, str]:
    """(digest, verified, check) from the record, trusted only while the file's size and time stamp match."""
    st = path.stat()
    fresh = rec is not None and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
    digest = rec.get("sha256") if fresh else None
    verified = rec.get("verified") if fresh else None
    check = (rec.get("check") if fresh else None) or (entry.check if entry else "none")
    if not fresh:
        check = "unchecked"
    return digest, verified, check


def _message(
    entry: KnownWeights | None, rec: Mapping[str, Any] | None, digest: str | None, verified: bool | None, check: str
) -> str:
    """The line for people in a present file's status."""
    if verified is False:
        against = (
            f"recorded sha256 {rec.get('sha256')}"
            if check == "recorded" and rec
            else (entry.expected() if entry is not None else "expected sha256")
        )
        return f"sha256 {digest} does not match the {against}; the file is corrupt or not the expected one"
    if verified is True:
        return "unchanged since it entered the store (no published sha256)" if check == "recorded" else "ok"
    if check == "recorded":
        return "no published sha256; its sha256 is recorded so that later changes show"
    return "not checked since it entered or changed; run 'medtrans weights verify'"


def status(
    name: str, entry: KnownWeights | None, path: Path, records: Mapping[str, Any], *, rehash: bool
) -> WeightsStatus:
    """The state of one file: hashed now (``rehash``) or from its record while the file is unchanged."""
    if not path.is_file():
        return _absent(name, entry, path)
    rec = records.get(path.name)
    digest, verified, check = (_rehashed if rehash else _cached)(entry, path, rec)
    msg = _message(entry, rec, digest, verified, check)
    return WeightsStatus(name, True, path, verified, check, entry is not None, path.stat().st_size, digest, msg)


# -- listing, verifying and finding files against a manifest --------------------------------------------
def custom_files(manifest: Sequence[KnownWeights]) -> list[Path]:
    """Files in the store that are not manifest entries (hidden files left out), by name."""
    d = store_dir()
    if not d.is_dir():
        return []
    known = {e.filename for e in manifest}
    return sorted(
        p for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in known
    )


def lookup(manifest: Sequence[KnownWeights], name: str) -> KnownWeights | None:
    """Manifest entry for a name; None for a file in the store; UnknownChoiceError otherwise."""
    for entry in manifest:
        if entry.name == name:
            return entry
    entry = entry_by_filename(manifest, name)
    if entry is not None:
        return entry
    if (store_dir() / sanitise_filename(name)).is_file():
        return None
    raise UnknownChoiceError(
        "weights", name, [e.name for e in manifest] + [p.name for p in custom_files(manifest)]
    )


def list_statuses(manifest: Sequence[KnownWeights]) -> list[WeightsStatus]:
    """What :func:`napari_medtrans.core.weights.list_weights` returns, for ``manifest``."""
    d = store_dir()
    records = read_records()
    out = [status(e.name, e, d / e.filename, records, rehash=False) for e in manifest]
    out += [status(p.name, None, p, records, rehash=False) for p in custom_files(manifest)]
    return out


def verify_statuses(manifest: Sequence[KnownWeights], name: str | None = None) -> list[WeightsStatus]:
    """What :func:`napari_medtrans.core.weights.verify_weights` returns, for ``manifest``."""
    d = store_dir()
    records = read_records()
    if name is not None:
        entry = lookup(manifest, name)
        path = d / (entry.filename if entry else sanitise_filename(name))
        return [status(name, entry, path, records, rehash=True)]
    out = [status(e.name, e, d / e.filename, records, rehash=True) for e in manifest if (d / e.filename).is_file()]
    out += [status(p.name, None, p, records, rehash=True) for p in custom_files(manifest)]
    return out


def path_in_store(manifest: Sequence[KnownWeights], name: str) -> Path:
    """What :func:`napari_medtrans.core.weights.weights_path` returns, for ``manifest``."""
    entry = lookup(manifest, name)
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
