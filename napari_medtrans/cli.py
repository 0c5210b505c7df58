"""`medtrans`: the command-line face of napari-medtrans.

Each subcommand lives in its own module under ``napari_medtrans._cli`` exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily enough that ``medtrans --help``
stays fast: heavy imports (torch, pydicom) happen inside ``run``.

Errors: a :class:`~napari_medtrans.core.errors.MedtransError` becomes one line on stderr,
``medtrans COMMAND: error: PATH: PROBLEM``, and exit status 2. Whatever else escapes a command is turned into the
same one line by a last-resort handler: an OSError names its file, a MemoryError the command's input, anything
else is called an unexpected error (a bug to report; ``MEDTRANS_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys

from . import __version__
from .core.errors import MedtransError

#: Subcommand modules in the order --help lists them.
COMMANDS = (
    "info",
    "phantom",
    "dataset",
    "convert",
    "translate",
    "translate_dataset",
    "evaluate",
    "floors",
    "segment_eval",
    "segmenter",
    "table3",
    "train",
    "ablation",
    "weights",
    "demo",
    "export",
    "study",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medtrans",
        description=(
            "MRI contrast translation workstation. Load NIfTI/DICOM volumes, make phantom data, "
            "translate one contrast into another with a trained model, evaluate and export."
        ),
        epilog="Run 'medtrans COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"napari_medtrans._cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"napari_medtrans._cli.{name}":
                continue  # command not part of this build
            raise
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except MedtransError as exc:
        return _fail(args.command, str(exc))
    except KeyboardInterrupt:
        print(f"medtrans {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback, unless debugging
        if os.environ.get("MEDTRANS_DEBUG", "") not in ("", "0"):
            raise
        return _fail(args.command, last_resort_message(exc, args))


def _fail(command: str, message: str) -> int:
    """Print ``message`` as one line on stderr (a message with line breaks is joined) and return 2."""
    one_line = re.sub(r"\s*\n\s*", " ", message.strip())
    print(f"medtrans {command}: error: {one_line}", file=sys.stderr)
    return 2


def _input_of(args: argparse.Namespace) -> str | None:
    """The path a command was reading, to name in a message when the exception names none."""
    for name in ("path", "input", "volume", "inputs", "data"):
        value = getattr(args, name, None)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return os.fspath(value)
    return None


def _name(filename) -> str:
    return os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else str(filename)


def last_resort_message(exc: BaseException, args: argparse.Namespace) -> str:
    """The one-line ``PATH: PROBLEM`` for an exception that is not a MedtransError (see the module notes)."""
    from .core.io.paths import os_reason

    where = _input_of(args)
    if isinstance(exc, OSError):
        problem = os_reason(exc)
        if exc.filename is not None:
            where = _name(exc.filename)
            if exc.filename2 is not None:
                where += f" -> {_name(exc.filename2)}"
            elif exc.errno == errno.EEXIST and not os.path.isdir(where):
                problem = "already exists and is not a folder"
            elif exc.errno == errno.ENOTDIR:
                problem = "a part of this path is a file, not a folder"
    elif isinstance(exc, MemoryError):
        problem = (f"not enough memory ({exc or 'MemoryError'}); the input may claim more voxels than it holds, "
                   "or be too large for this machine")
    else:
        problem = (f"unexpected error ({type(exc).__name__}: {exc}); this is a bug, please report it "
                   "(MEDTRANS_DEBUG=1 shows the traceback)")
    return f"{where}: {problem}" if where else problem


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
