"""One combo box per input modality of a translator, defaulting to an acquired volume of that modality."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QWidget

__all__ = ["InputPicker"]

_TOOLTIP_ROLE = 3  # Qt.ToolTipRole


class InputPicker(QWidget):
    """Rows "Input T1", "Input T2", ... listing the available volumes by name.

    Beside each combo box a label names the picked volume's own contrast, and says so plainly when it is not the
    one the model takes (the translation would then be refused, see ``core.engine``)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._sources: list[tuple[str, str | None]] = []
        self._boxes: dict[str, QComboBox] = {}
        self._labels: dict[str, QLabel] = {}
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
        self._labels = {}
        for modality in modalities:
            box = QComboBox()
            box.addItems([name for name, _ in self._sources])
            for i, (name, mod) in enumerate(self._sources):
                box.setItemData(i, f"{name}: {mod or 'contrast unknown'}", _TOOLTIP_ROLE)
            pick = previous.get(modality)
            if not pick or box.findText(pick) < 0:
                same = [n for n, m in self._sources if m == modality and not n.upper().startswith("SYNTHETIC")]
                pick = same[0] if same else ""
            if pick:
                box.setCurrentIndex(box.findText(pick))
            label = QLabel()
            row = QWidget()
            hbox = QHBoxLayout(row)
            hbox.setContentsMargins(0, 0, 0, 0)
            hbox.addWidget(box, 1)
            hbox.addWidget(label)
            self._layout.addRow(f"Input {modality}", row)
            self._boxes[modality] = box
            self._labels[modality] = label
            box.currentTextChanged.connect(lambda _text, m=modality: self._show_contrast(m))
            self._show_contrast(modality)

    def contrast_of(self, name: str) -> str | None:
        """The own contrast of the offered volume ``name`` (None when unknown or not offered)."""
        return next((m for n, m in self._sources if n == name), None)

    def contrast_text(self, modality: str) -> str:
        """What the label beside the ``modality`` row says."""
        return self._labels[modality].text() if modality in self._labels else ""

    def _show_contrast(self, modality: str) -> None:
        name = self._boxes[modality].currentText()
        label = self._labels[modality]
        own = self.contrast_of(name) if name else None
        if not name:
            label.setText("")
            label.setStyleSheet("")
        elif own is None:
            label.setText("contrast unknown")
            label.setStyleSheet("")
        elif own == modality:
            label.setText(own)
            label.setStyleSheet("")
        else:
            label.setText(f"is {own}, not {modality}")
            label.setStyleSheet("color: #d33;")
        label.setToolTip(
            f"{name}: {own or 'contrast unknown'}; the model takes {modality}" if name else ""
        )

    def names(self) -> dict[str, str]:
        """The picked volume name for every input modality ("" when none)."""
        return {m: box.currentText() for m, box in self._boxes.items()}
