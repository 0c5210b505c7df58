"""The core, translators and training never import Qt or napari (they must run headless, on servers)."""

import json
import subprocess
import sys

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "qtpy", "superqt", "napari", "magicgui", "vispy")


def test_core_translators_training_import_without_qt():
    code = (
        "import sys, json\n"
        "import napari_medtrans.core, napari_medtrans.core.io, napari_medtrans.translators, "
        "napari_medtrans.training\n"
        "import napari_medtrans.translators.base as b; b.list_translators()\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    leaked = sorted(loaded.intersection(FORBIDDEN))
    assert leaked == [], f"headless packages imported GUI modules: {leaked}"


def test_cli_help_is_fast_and_headless():
    code = (
        "import sys, json\n"
        "from napari_medtrans.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded.intersection(FORBIDDEN + ("torch",)), "medtrans --help must not import torch or Qt"
