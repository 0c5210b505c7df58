"""`medtrans-app`: the standalone clinician workstation.

    medtrans-app [PATH ...]        open NIfTI files, DICOM folders or subject folders
    medtrans-app --demo            a phantom subject with the shipped demo model ready to run
    medtrans-app --study BUNDLE    a blinded reader study (sign in, score, resume)
    medtrans-app --self-test       headless check of the installation (exit code 0 when it works)
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medtrans-app", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("paths", nargs="*", help="files or folders to open")
    p.add_argument("--demo", action="store_true", help="open a phantom subject with the demo model")
    p.add_argument("--study", metavar="BUNDLE", help="open a reader study bundle (folder)")
    p.add_argument("--self-test", action="store_true", help="run headless, translate a phantom, exit")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        from . import __version__

        print(f"medtrans-app {__version__}")
        return 0
    if args.self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from .selftest import run_self_test

        return run_self_test()
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("medtrans-app")
    app.setOrganizationName("napari-medtrans")
    if args.study:
        from .reader import ReaderWindow

        window = ReaderWindow.from_bundle(args.study)
        if window is None:
            return 2
    else:
        from .main_window import MainWindow

        window = MainWindow()
        if args.demo:
            window.setup_demo()
        if args.paths:
            window.open_paths(args.paths)
    window.show()
    return int(app.exec())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
