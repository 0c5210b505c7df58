"""`medtrans`: the command-line face of napari-medtrans.

Each subcommand lives in its own module under ``napari_medtrans._cli`` exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily enough that ``medtrans --help``
stays fast: heavy imports (torch, pydicom) happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .core.errors import MedtransError

#: Subcommand modules in the order --help lists them.
COMMANDS = (
    "info",
    "phantom",
    "convert",
    "translate",
    "translate_dataset",
    "evaluate",
    "floors",
    "segment_eval",
    "train",
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
        print(f"medtrans {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medtrans {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
