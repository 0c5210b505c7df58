"""Cancellation inside a network call: long translator loops stop within one step, not one slice.

The engine asks ``should_cancel()`` before every call to the network (:func:`~napari_medtrans.core.engine.
translate_volume`); a diffusion model spends a whole sampling chain in one call (EDTS-Trans: about a second per
slice on a CPU core), so Cancel would wait for it. While the engine runs, :func:`cancel_scope` makes the same
check reachable from inside the call: :func:`cancellation_point`, called by the samplers at every step, raises
:class:`~napari_medtrans.core.errors.TranslationCancelled` when it answers True. The check lives in a context
variable, so each worker thread sees only its own translation's.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

from .errors import TranslationCancelled

__all__ = ["cancel_scope", "cancellation_point"]

_CHECK: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("medtrans_cancel", default=None)


@contextlib.contextmanager
def cancel_scope(should_cancel: Callable[[], bool] | None) -> Iterator[None]:
    """Make ``should_cancel`` the check :func:`cancellation_point` asks, for the duration of the block."""
    token = _CHECK.set(should_cancel)
    try:
        yield
    finally:
        _CHECK.reset(token)


def cancellation_point() -> None:
    """Raise :class:`TranslationCancelled` if the translation running in this thread has been asked to stop."""
    check = _CHECK.get()
    if check is not None and check():
        raise TranslationCancelled()
