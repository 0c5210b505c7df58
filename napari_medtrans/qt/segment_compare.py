"""The Segment panel's comparison group: which images to compare (source, real target, synthetic), the
ground-truth label map, its label values, the prompt mode, and the table of results (Table III of EDTS-Trans).

The prompts are the user's points and boxes when there are any (the same for every image), else boxes derived
from the ground truth; the result text says which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QWidget,
)

__all__ = ["CompareGroup", "NONE", "fill_box"]

NONE = "(none)"
ROLES = (("source", "Source"), ("real", "Real target"), ("synthetic", "Synthetic"), ("truth", "Ground truth"))


def fill_box(box: QComboBox, items: Sequence[str], none: bool) -> None:
    """Replace a combo box's items (with a leading "(none)" when ``none``), keeping the current one if listed."""
    current = box.currentText()
    box.blockSignals(True)
    box.clear()
    box.addItems(([NONE] if none else []) + list(items))
    if box.findText(current) >= 0:
        box.setCurrentText(current)
    box.blockSignals(False)


class CompareGroup(QGroupBox):
    """Pickers for the comparison and its result table; :meth:`picks` turns them into request parts."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Compare source, real and synthetic", parent)
        self.boxes = {key: QComboBox() for key, _ in ROLES}
        self.labels_edit = QLineEdit()
        self.labels_edit.setPlaceholderText("label values, e.g. 4 5 6 (empty: any non-zero)")
        self.mode_box = QComboBox()
        self.mode_box.addItem("each slice on its own (2D)", "slices")
        self.mode_box.addItem("propagated from the key slice (3D)", "propagate")
        self.mode_box.setToolTip(
            "2D: each prompted slice (or, without your prompts, each slice holding the object) is segmented on "
            "its own. 3D: the mask is propagated forward and backward from your first prompted slice (or the "
            "slice where the ground-truth object is largest).")
        self.prompt_note = QLabel("Uses your points and boxes for every image when there are any, "
                                  "else boxes around the ground-truth object.")
        self.prompt_note.setWordWrap(True)
        self.evaluate_button = QPushButton("Compare")
        self.table = QPlainTextEdit()
        self.table.setReadOnly(True)
        self.table.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        form = QFormLayout(self)
        for key, label in ROLES:
            form.addRow(label, self.boxes[key])
        form.addRow("Labels", self.labels_edit)
        form.addRow("Prompts", self.mode_box)
        form.addRow(self.prompt_note)
        form.addRow(self.evaluate_button)
        form.addRow(self.table)

    def set_sources(self, names: Sequence[str], labels: Sequence[str]) -> None:
        for key in ("source", "real", "synthetic"):
            fill_box(self.boxes[key], names, True)
        fill_box(self.boxes["truth"], list(labels), True)

    def picks(self, volume_provider: Callable[[str], Any] | None) -> tuple[dict, Any, list[int] | None]:
        """``(images by "name (role)", ground truth Volume, label values or None)``; raises a MedtransError
        naming what is missing or malformed."""
        from ..core.errors import MedtransError

        picks = {key: box.currentText() for key, box in self.boxes.items()}
        if picks["truth"] in ("", NONE) or volume_provider is None:
            raise MedtransError("choose the ground-truth label map")
        chosen = {k: volume_provider(picks[k]) for k in ("source", "real", "synthetic") if picks[k] not in ("", NONE)}
        if "real" in chosen and "synthetic" in chosen:
            from ..core.compare import check_comparable

            # The synthetic image stands in for the real target: both must be the same contrast.
            check_comparable(chosen["synthetic"], chosen["real"])
        images = {f"{picks[k]} ({k})": v for k, v in chosen.items()}
        if not images:
            raise MedtransError("choose at least one image to compare")
        try:
            labels = [int(v) for v in self.labels_edit.text().replace(",", " ").split()] or None
        except ValueError:
            raise MedtransError(f"labels must be whole numbers, got {self.labels_edit.text()!r}") from None
        return images, volume_provider(picks["truth"]), labels
