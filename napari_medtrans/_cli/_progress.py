"""A text progress bar for CLI commands, as a plain ``progress(done, total)`` callable."""

from __future__ import annotations

import sys


class TextProgress:
    """Context manager giving a ``(done, total)`` callable that drives a tqdm bar on stderr."""

    def __init__(self, desc: str, unit: str = "slice"):
        self.desc = desc
        self.unit = unit
        self._bar = None

    def __enter__(self):
        return self

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                             disable=not sys.stderr.isatty(), leave=False)
        self._bar.n = done
        self._bar.refresh()

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()
        return False
