"""One combo box per input modality of a translator, defaulting to an acquired volume of that modality."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtWidgets import QComboBox, QFormLayout, QWidget

__all__ = ["InputPicker"]


class InputPicker(QWidget):
    """Rows "Input T1", "Input T2", ... listing the available volumes by name."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._sources: list[tuple[str, str | None]] = []
        self._boxes: dict[str, QComboBox] = {}
        self.set_modalities(("T1",))

    def modalities(self) -> tuple[str, ...]:
        return tuple(self._boxes)

    def set_sources(self, items: Sequence[tuple[str, str | None]]) -> None:
        """Volumes offered, as ``(name, modality)``; current picks are kept where they still exist."""
        self._sources = list(items)
        self.set_modalities(self.modalities())

    def set_modalities(self, modalities: Sequence[str]) -> None:
        """One row per input modality; a new row picks an acquired (not SYNTHETIC) volume of its modality."""
        previous = self.names()
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._boxes = {}
        for modality in modalities:
            box = QComboBox()
            box.addItems([name for name, _ in self._sources])
            pick = previous.get(modality)
            if not pick or box.findText(pick) < 0:
                same = [n for n, m in self._sources if m == modality and not n.upper().startswith("SYNTHETIC")]
                pick = same[0] if same else ""
            if pick:
                box.setCurrentIndex(box.findText(pick))
            self._layout.addRow(f"Input {modality}", box)
            self._boxes[modality] = box

    def names(self) -> dict[str, str]:
        """The picked volume name for every input modality ("" when none)."""
        return {m: box.currentText() for m, box in self._boxes.items()}
