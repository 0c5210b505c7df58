"""How files enter the weights store: import from a local file, or fetch over http(s) when asked.

Holds :func:`import_file` (what ``medtrans weights import PATH`` does: copy while hashing, pick the manifest
entry or the file name, check the published sha256) and :func:`fetch_entry` (what ``medtrans weights fetch
NAME`` does: stream into a temporary file, check, rename into place). Both record the sha256 they saw in the
store's records. The public, documented entry points are :func:`napari_medtrans.core.weights.import_weights`
and :func:`napari_medtrans.core.weights.fetch_weights`, which pass in the manifest.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ChecksumError, UnknownChoiceError, WeightsError, suggest
from .weights_loading import CHUNK, copy_hashing, sha256_file
from .weights_manifest import KnownWeights, entry_by_filename, entry_by_name, sanitise_filename
from .weights_store import check_against, record, store_dir

__all__ = ["ProgressFn", "import_file", "fetch_entry"]

ProgressFn = Callable[[int, int], None]


# -- import from a local file ---------------------------------------------------------------------------
def _named_target(
    manifest: Sequence[KnownWeights], name: str, src: Path
) -> tuple[KnownWeights | None, str | None]:
    """(entry, None) when ``name`` is a manifest name, else (None, the sanitised file name to store under)."""
    entry = entry_by_name(manifest, name)
    if entry is not None:
        return entry, None
    close = suggest(name, [e.name for e in manifest])
    if close is not None:
        raise UnknownChoiceError("weights", name, [e.name for e in manifest])
    target_name = sanitise_filename(name)
    if not Path(target_name).suffix and src.suffix:
        target_name = sanitise_filename(name + src.suffix)
    return None, target_name


def _match_by_content(manifest: Sequence[KnownWeights], digest: str, filename: str) -> KnownWeights | None:
    """The entry an unnamed file is: full sha256 first, then its file name, then a published sha256 prefix."""
    entry = next((e for e in manifest if e.matches(digest) is True and e.check == "sha256"), None)
    entry = entry or entry_by_filename(manifest, filename)
    return entry or next((e for e in manifest if e.matches(digest) is True), None)


def _destination(
    d: Path, entry: KnownWeights | None, target_name: str, src: Path, digest: str, *, overwrite: bool
) -> Path:
    """Where the imported file goes; refuses a checksum mismatch or a different file of the same name."""
    if entry is not None:
        if entry.matches(digest) is False:
            raise ChecksumError(
                f"sha256 {digest} does not match {entry.expected()} published for {entry.name!r} "
                f"({entry.url}); the file is corrupt or not the expected one",
                src,
                expected=entry.sha256 or entry.sha256_prefix,
                actual=digest,
            )
        return d / entry.filename
    dest = d / target_name
    if dest.exists() and not overwrite and sha256_file(dest) != digest:
        raise WeightsError(
            f"a different file named {dest.name!r} is already in the store ({dest}); "
            "pass overwrite=True (--overwrite) to replace it or choose another --name",
            src,
        )
    return dest


def import_file(
    manifest: Sequence[KnownWeights], path: str | os.PathLike, name: str | None = None, *, overwrite: bool = False
) -> Path:
    """What :func:`napari_medtrans.core.weights.import_weights` does, for ``manifest``."""
    src = Path(path)
    if not src.is_file():
        raise WeightsError("cannot import: no such file" if not src.exists() else "cannot import: not a file", src)
    entry, target_name = _named_target(manifest, name, src) if name is not None else (None, None)
    d = store_dir(create=True)
    try:
        tmp, digest = copy_hashing(src, d)
    except OSError as exc:
        raise WeightsError(f"cannot import: {exc.strerror or exc}", src) from exc
    try:
        if entry is None and target_name is None:
            entry = _match_by_content(manifest, digest, src.name)
            if entry is None:
                target_name = sanitise_filename(src.name)
        dest = _destination(d, entry, target_name, src, digest, overwrite=overwrite)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    verified, check = check_against(entry, digest, None)
    record(dest, digest, verified, check if check != "none" else "recorded", f"import:{src.name}")
    return dest


# -- fetch over http(s) ---------------------------------------------------------------------------------
def _stream(resp: Any, out: Any, size: int | None, progress: ProgressFn | None) -> tuple[str | None, int, str]:
    """Copy the response into ``out`` while hashing; returns (its Content-Length header, bytes read, sha256)."""
    h = hashlib.sha256()
    done = 0
    length = resp.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else (size or 0)
    if progress is not None:
        progress(0, total)
    while chunk := resp.read(CHUNK):
        h.update(chunk)
        out.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return length, done, h.hexdigest()


def _download(
    fd: int, src: str, entry: KnownWeights, progress: ProgressFn | None, timeout: float, hint: str
) -> str:
    """Download ``src`` into the open temporary file ``fd`` (closed here); returns the sha256."""
    name = entry.name
    try:
        req = urllib.request.Request(src, headers={"User-Agent": "napari-medtrans"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
            fd = -1
            length, done, digest = _stream(resp, out, entry.size, progress)
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
    return digest


def fetch_entry(
    entry: KnownWeights,
    *,
    progress: ProgressFn | None = None,
    url: str | None = None,
    timeout: float = 30,
) -> Path:
    """What :func:`napari_medtrans.core.weights.fetch_weights` does, for one manifest entry."""
    name = entry.name
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
    try:
        digest = _download(fd, src, entry, progress, timeout, hint)
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
    record(dest, digest, ok, entry.check if ok is not None else "recorded", f"fetch:{src}")
    return dest
