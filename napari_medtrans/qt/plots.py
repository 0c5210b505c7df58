"""Matplotlib canvases for the inspect panel: metric per slice (click to go to a slice) and trust vs error."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Signal

__all__ = ["SliceMetricPlot", "TrustPlot"]


class _Canvas(FigureCanvasQTAgg):
    def __init__(self, height: float = 2.2):
        fig = Figure(figsize=(4.0, height), layout="constrained")
        super().__init__(fig)
        self.axes = fig.add_subplot(111)
        self.setMinimumHeight(int(height * 60))


class SliceMetricPlot(_Canvas):
    """One metric against the slice index, with a marker at the current slice.

    ``slice_clicked(int)`` is emitted with the nearest slice when the plot is clicked.
    """

    slice_clicked = Signal(int)

    def __init__(self):
        super().__init__()
        self._values: np.ndarray | None = None
        self._marker = None
        self.mpl_connect("button_press_event", self._on_click)

    def show_values(self, values: np.ndarray, label: str, current: int | None = None) -> None:
        """Plot ``values`` (one per slice) with ``label`` on the y axis."""
        self._values = np.asarray(values, dtype=np.float64)
        ax = self.axes
        ax.clear()
        shown = np.where(np.isfinite(self._values), self._values, np.nan)
        ax.plot(np.arange(len(shown)), shown, lw=1.2, color="tab:blue")
        ax.set_xlabel("slice")
        ax.set_ylabel(label)
        ax.set_xlim(-0.5, max(len(shown) - 0.5, 0.5))
        self._marker = ax.axvline(current if current is not None else -1, color="tab:red", lw=1)
        self.draw_idle()

    def set_current(self, index: int) -> None:
        if self._marker is not None:
            self._marker.set_xdata([index, index])
            self.draw_idle()

    def slice_at(self, x: float) -> int | None:
        """The slice nearest to the x data coordinate ``x`` (None without data)."""
        if self._values is None or not len(self._values):
            return None
        return int(np.clip(round(x), 0, len(self._values) - 1))

    def _on_click(self, event) -> None:
        if event.inaxes is not self.axes or event.xdata is None:
            return
        index = self.slice_at(event.xdata)
        if index is not None:
            self.slice_clicked.emit(index)


class TrustPlot(_Canvas):
    """Mean absolute error in bins of the trust map's value (bars) and their correlation in the title."""

    def show_curve(self, curve) -> None:
        ax = self.axes
        ax.clear()
        if curve is None:
            ax.text(0.5, 0.5, "choose a TSM or spread map to relate it to the error", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            ax.set_axis_off()
        else:
            ax.set_axis_on()
            width = float(np.diff(curve.edges).mean()) * 0.9
            ax.bar(curve.centres, np.nan_to_num(curve.mean_error), width=width, color="tab:orange")
            ax.set_xlabel(f"{curve.map_name} value")
            ax.set_ylabel("mean |error|")
            ax.set_title(f"r = {curve.correlation:.2f}", fontsize=9)
        self.draw_idle()
