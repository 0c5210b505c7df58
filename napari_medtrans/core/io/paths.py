"""Where files go: can OUT be written, and why a path cannot be read, in words.

:func:`check_output_path` is called before any work is done, so that a command fails at once (and leaves nothing
behind) when its output cannot be created: a parent that is a file, a folder that refuses new files (/proc, a
read-only file system, no permission), a name longer than the file system allows, or an output that exists as
the wrong kind (a folder where a file is to be written, or the other way round).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ..errors import OutputPathError

__all__ = ["check_output_path", "missing_reason", "os_reason", "refuse_overwriting_inputs"]

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ELOOP: "a loop of symbolic links",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
}


def os_reason(exc: OSError) -> str:
    """The problem an OSError reports, in lower-case words ("permission denied", "no such file or directory")."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def missing_reason(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be opened when ``os.path.exists`` says it is not there.

    "no such file or folder", or what is really wrong: a symbolic link that leads nowhere or loops, or a part
    of the path that is a file, not a folder.
    """
    p = Path(path)
    if os.path.islink(p):
        try:
            os.stat(p)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symbolic link that loops (it leads back to itself)"
        return f"is a symbolic link to {os.readlink(p)}, which does not exist"
    for parent in p.parents:
        if os.path.lexists(parent):
            if not os.path.isdir(parent):
                return f"no such file or folder: {parent} is a file, not a folder"
            break
    return "no such file or folder"


def check_output_path(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Make sure ``path`` can be written as a new file (or, with ``folder=True``, a folder), before any work.

    Nothing is created except, briefly, an empty probe file in the nearest existing folder (removed at once):
    only trying shows whether a file system really takes new files (permission bits do not say so for root,
    nor for /proc).

    Parameters
    ----------
    path : path-like
        The output file or folder. Missing parent folders are fine when they can be made.
    folder : bool
        True when ``path`` is to be a folder (an existing folder is then accepted; its contents are the
        writer's business).

    Returns
    -------
    Path
        ``path`` as a Path.

    Raises
    ------
    OutputPathError
        Naming ``path`` and the problem.
    """
    p = Path(path)
    if os.path.lexists(p):
        if os.path.islink(p) and not os.path.exists(p):
            raise OutputPathError(missing_reason(p), p)
        if p.is_dir() and not folder:
            raise OutputPathError("is a folder; give a file name to write", p)
        if not p.is_dir() and folder:
            raise OutputPathError("is a file; a folder is needed here", p)
        if not p.is_dir() and not p.is_file():
            raise OutputPathError("exists and is not a regular file (a device, pipe or socket)", p)
    # The nearest folder that exists: everything below it is made by the writer.
    to_make = [p.name]
    parent = p.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        to_make.append(parent.name)
        parent = parent.parent
    if not os.path.isdir(parent):
        what = "a broken symbolic link" if os.path.islink(parent) else "a file"
        raise OutputPathError(f"cannot be written: {parent} is {what}, not a folder", p)
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for name in to_make:
        if len(os.fsencode(name)) > name_max:
            raise OutputPathError(
                f"cannot be written: the name {name[:40]}... is {len(os.fsencode(name))} bytes long; the file "
                f"system allows {name_max}",
                p,
            )
    if p.exists() and folder:
        probe_in = p
    else:
        probe_in = parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".medtrans-probe-", dir=probe_in)
    except OSError as exc:
        reason = os_reason(exc)
        if exc.errno == errno.ENOENT:
            reason = "the file system there does not take new files"
        raise OutputPathError(f"cannot be written: {probe_in} refuses new files ({reason})", p) from exc
    os.close(fd)
    os.unlink(probe)
    return p


def refuse_overwriting_inputs(out: str | os.PathLike, inputs) -> None:
    """Raise :class:`OutputPathError` when ``out`` is one of ``inputs`` (the same file by path, link or hard
    link) or lies inside an input folder (a DICOM series): nothing is ever written over what was read."""
    target = Path(out)
    real_out = Path(os.path.realpath(target))
    for item in inputs:
        real_in = Path(os.path.realpath(item))
        same = real_out == real_in
        if not same and target.exists():
            try:
                same = os.path.samefile(target, item)
            except OSError:
                same = False
        inside = real_in.is_dir() and real_in in real_out.parents
        if same or inside:
            raise OutputPathError(
                f"is {'inside ' if inside and not same else ''}an input of this command ({item}); writing there "
                "would overwrite what was read. Choose another output",
                out,
            )
