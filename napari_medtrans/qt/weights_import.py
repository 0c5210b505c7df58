"""Import weights into the local store from a GUI ("Import weights..." in the app, the translate and segment
panels): a file dialog, the copy and hash check in a worker, and a message that names where the file went.

The store and its checks are :mod:`napari_medtrans.core.weights` (what ``medtrans weights import`` does): a file
that matches a known entry (VGG16, SAM2.1, MedSAM2) by name or hash is stored under that entry's name and checked
against the published sha256; any other file (a translator checkpoint) keeps its own name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QWidget

from .workers import Job, start_job

__all__ = ["WEIGHT_FILES", "import_job", "pick_and_import", "describe_import"]

#: The file dialog's filter.
WEIGHT_FILES = "Weights (*.pt *.pth *.safetensors *.ckpt *.ts *.torchscript *.onnx);;All files (*)"


def import_job(_job, path: str) -> tuple[Path, str]:
    """Copy ``path`` into the store (a job function); returns where it went and a sentence that says so."""
    from ..core import weights

    dest = weights.import_weights(path)
    return dest, describe_import(dest)


def describe_import(dest: Path) -> str:
    """One sentence for the user: the stored name, the store, and whether a published hash was checked."""
    from ..core import weights

    known = next((e for e in weights.MANIFEST if e.filename == dest.name), None)
    if known is None:
        check = "not a known download, so there is no published hash to check; a model file is listed with the models"
    elif known.sha256 or known.sha256_prefix:
        check = f"'{known.name}', checked against the sha256 its owner published"
    else:
        check = f"'{known.name}'; its owner publishes no hash, so the sha256 seen now is recorded and verified later"
    return f"{dest.name} is in the weights store ({dest.parent}); {check}."


def pick_and_import(parent: QWidget | None, on_done: Callable[[Path, str], None] | None = None,
                    *, start_dir: str = "") -> Job | None:
    """Ask for a file and import it in a worker; ``on_done(dest, message)`` runs on success. Errors go to the
    worker error sink (the GUI's message), naming the file and the problem. None when the dialog is cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, "Import weights into the store", start_dir, WEIGHT_FILES)
    if not path:
        return None
    job = start_job(import_job, path, name=f"importing {Path(path).name}")
    if on_done is not None:
        job.succeeded.connect(lambda result: on_done(*result))
    return job
