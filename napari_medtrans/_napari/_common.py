"""Glue shared by the dock widgets: napari notifications as the worker error sink, layer lists, map styles."""

from __future__ import annotations

from collections.abc import Callable

from ..core.volume import Volume
from ._layers import layer_to_volume, volume_layer_data

__all__ = ["install_error_handler", "show_whole_message", "watch_layers", "image_layer_items", "add_volume_layer", "map_style", "get_volume",
           "synthetic_banner", "show_synthetic_banner", "text_overlay", "panel_dock", "follow_layers"]


#: napari's toast shows one elided line of about this many characters until it is expanded.
TOAST_CHARS = 80


def _notify(message: str, exc: BaseException) -> None:
    """A napari error notification; one that does not fit the toast's single line also gets a "Show all" button
    (visible without expanding the toast) that opens the whole message, fix included, in a dialog whose text can
    be selected and copied."""
    from napari.utils.notifications import Notification, NotificationSeverity, notification_manager

    actions = []
    if len(message) > TOAST_CHARS or "\n" in message:
        actions.append(("Show all", lambda dialog: show_whole_message(message, dialog)))
    notification_manager.dispatch(Notification(message, severity=NotificationSeverity.ERROR, actions=actions))


def show_whole_message(message: str, parent=None):
    """The whole of an error message in a dialog (word-wrapped, selectable); returns the dialog, already shown."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QMessageBox

    # Parented to the toast's owner (the canvas), not to the toast, which closes itself after a few seconds.
    owner = parent.parent() if parent is not None else None
    box = QMessageBox(QMessageBox.Icon.Critical, "napari-medtrans", message, QMessageBox.StandardButton.Close, owner)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setModal(False)
    box.show()
    return box


def install_error_handler() -> None:
    """Route every worker error (qt/workers.py) to napari's notifications."""
    from ..qt.workers import set_error_handler

    set_error_handler(_notify)


def tabify_with_siblings(widget) -> None:
    """Once ``widget`` sits in a napari dock, put that dock in the same tab group as the other napari-medtrans
    docks on its side, so four panels share one column (napari then fits a 1366 x 768 screen) and the new one
    is raised. Call from a widget's ``__init__``; does nothing outside a main window."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

    def dock_of(w):
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        return w

    def ours(dock) -> bool:
        return any(type(c).__module__.startswith("napari_medtrans._napari") for c in dock.findChildren(QWidget))

    def later():
        try:
            dock = dock_of(widget)
        except RuntimeError:  # the widget was deleted before the event loop turned
            return
        main = dock.parentWidget() if dock is not None else None
        if dock is None or not isinstance(main, QMainWindow):
            return
        area = main.dockWidgetArea(dock)
        for other in main.findChildren(QDockWidget):
            if other is not dock and other.isVisible() and main.dockWidgetArea(other) == area and ours(other):
                main.tabifyDockWidget(other, dock)
                dock.show()
                dock.raise_()
                break

    QTimer.singleShot(0, later)


def image_layer_items(viewer, kinds=("image",), *, acquired_only: bool = False) -> list[tuple[str, str | None]]:
    """``(name, modality)`` of every 3D layer of the given kinds, top of the layer list first; with
    ``acquired_only`` the layers marked synthetic (translations, their previews) are left out."""
    items = []
    for layer in reversed(list(viewer.layers)):
        if acquired_only and (layer.metadata or {}).get("synthetic"):
            continue
        if type(layer).__name__.lower() in kinds and layer.ndim == 3 and not getattr(layer, "multiscale", False):
            items.append((layer.name, (layer.metadata or {}).get("modality")))
    return items


def watch_layers(viewer, callback: Callable[[], None], owner) -> None:
    """Call ``callback()`` whenever layers are added, removed, reordered or renamed (until ``owner`` dies)."""
    def on_inserted(event=None):
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(callback)
        callback()

    for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.moved):
        event.connect(on_inserted if event is viewer.layers.events.inserted else callback)
    for layer in viewer.layers:
        layer.events.name.connect(callback)

    def disconnect():
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.moved):
            for cb in (on_inserted, callback):
                try:
                    event.disconnect(cb)
                except (ValueError, TypeError, RuntimeError):
                    pass
        for layer in viewer.layers:
            try:
                layer.events.name.disconnect(callback)
            except (ValueError, TypeError, RuntimeError):
                pass

    owner.destroyed.connect(disconnect)


def synthetic_banner(viewer) -> str:
    """The text the canvas shows: "SYNTHETIC ..." when the top-most visible image layer is synthetic, else ""."""
    for layer in reversed(list(viewer.layers)):
        if type(layer).__name__ != "Image" or not layer.visible or layer.opacity == 0:
            continue
        if (layer.metadata or {}).get("synthetic"):
            return f"SYNTHETIC - {layer.name} - not an acquired image"
        return ""
    return ""


def text_overlay(viewer):
    """The canvas's text overlay (``viewer.canvas.overlays.text`` since napari 0.9, ``viewer.text_overlay`` before)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    found = getattr(overlays, "text", None) if overlays is not None else None
    return found if found is not None else viewer.text_overlay


def show_synthetic_banner(viewer) -> None:
    """Keep napari's canvas text overlay saying SYNTHETIC (in red, boxed, bottom left) while the top-most visible
    image layer is a synthetic one, as the app's panes do: a layer name alone is easily missed. Installed once per
    viewer by the dock widgets; follows layers added, removed, moved, shown, hidden and renamed."""
    if getattr(viewer, "_medtrans_banner", False):
        return

    def update(event=None):
        text = synthetic_banner(viewer)
        overlay = text_overlay(viewer)
        # The overlay stays visible once shown and gets a blank text instead of being hidden or emptied: either
        # of those, then the banner again after a layer was removed, crashes vispy's draw (a segfault in
        # glDrawArrays, napari 0.9 under Mesa); a test repeats the sequence.
        if text:
            overlay.color = (1.0, 0.2, 0.2, 1.0)
            overlay.font_size = 12
            overlay.position = "bottom_left"
            overlay.visible = True
        overlay.text = text or " "
        try:
            overlay.box = bool(text)
        except (AttributeError, ValueError):  # older napari: no box
            pass

    def watch(layer):
        for name in ("visible", "opacity", "name"):
            getattr(layer.events, name).connect(update)

    def on_inserted(event=None):
        layer = getattr(event, "value", None)
        if layer is not None:
            watch(layer)
        update()

    viewer.layers.events.inserted.connect(on_inserted)
    viewer.layers.events.removed.connect(update)
    viewer.layers.events.moved.connect(update)
    for layer in viewer.layers:
        watch(layer)
    viewer._medtrans_banner = True
    update()


def map_style(name: str) -> dict:
    """How a translator map is shown: TSM and spread as viridis overlays with a colour bar (the app's colours)."""
    if name.startswith("tsm"):
        return dict(colormap="viridis", opacity=0.5, contrast_limits=(0.0, 1.0), blending="translucent")
    if name.startswith("std"):
        return dict(colormap="viridis", opacity=0.6, blending="translucent")
    return dict(colormap="gray", visible=False)


def add_volume_layer(viewer, volume: Volume, name: str, **kwargs):
    """Add ``volume`` to ``viewer`` in place (see ``_layers``) and return the layer."""
    data, kw, layer_type = volume_layer_data(volume, name, **kwargs)
    return getattr(viewer, f"add_{layer_type}")(data, **kw)


def get_volume(viewer, name: str) -> Volume:
    """The Volume the layer ``name`` shows (raises a MedtransError naming the layer when it is gone)."""
    from ..core.errors import MedtransError

    if name not in viewer.layers:
        raise MedtransError(f"there is no layer named {name!r} any more")
    return layer_to_volume(viewer.layers[name])


def panel_dock(widget, napari_viewer, panel_cls):
    """Set up a medtrans dock widget around its Qt panel: napari error notifications, tabbed with the other medtrans
    docks, ``widget.viewer`` and ``widget.panel`` (reading volumes from the viewer's layers), the panel filling the
    dock. The widget connects the panel's signals, then calls :func:`follow_layers`."""
    from qtpy.QtWidgets import QVBoxLayout

    install_error_handler()
    tabify_with_siblings(widget)
    widget.viewer = napari_viewer
    widget.panel = panel_cls(widget)
    widget.panel.volume_provider = lambda name: get_volume(napari_viewer, name)
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(widget.panel)
    return widget.panel


def follow_layers(widget) -> None:
    """Keep ``widget``'s source lists in step with the viewer's layers (``widget._refresh_sources``) and the canvas's
    SYNTHETIC banner on; fill the lists now."""
    watch_layers(widget.viewer, widget._refresh_sources, widget)
    show_synthetic_banner(widget.viewer)
    widget._refresh_sources()
