"""What the app remembers between runs (QSettings): recent files and folders, view settings, window layout."""

from __future__ import annotations

import os

from qtpy.QtCore import QSettings

__all__ = ["AppSettings", "MAX_RECENT"]

MAX_RECENT = 10


class AppSettings:
    """Typed access to the app's QSettings (``path`` gives an INI file instead: for tests and the self-test)."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            self.qsettings = QSettings("napari-medtrans", "medtrans-app")
        else:
            self.qsettings = QSettings(os.fspath(path), QSettings.Format.IniFormat)

    def recent(self) -> list[str]:
        """Recently opened files and folders, newest first (entries that no longer exist are dropped)."""
        value = self.qsettings.value("recent", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [p for p in items if p and os.path.exists(p)]

    def add_recent(self, path: str | os.PathLike) -> list[str]:
        path = os.path.abspath(os.fspath(path))
        items = [path] + [p for p in self.recent() if p != path]
        self.qsettings.setValue("recent", items[:MAX_RECENT])
        self.qsettings.sync()
        return items[:MAX_RECENT]

    def get(self, key: str, default=None, kind=None):
        value = self.qsettings.value(key, default)
        if kind is not None and value is not None:
            try:
                return kind(value)
            except (TypeError, ValueError):
                return default
        return value

    def set(self, key: str, value) -> None:
        self.qsettings.setValue(key, value)
        self.qsettings.sync()
