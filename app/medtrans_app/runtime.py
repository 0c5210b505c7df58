"""Process-wide settings the app makes once at start so that its event loop stays responsive: torch's thread
count (every core but one; the count comes from :func:`napari_medtrans.qt.translation.cores_but_one`, the rule the
translation jobs use) and a frozen garbage collector. Used by the main window and the reader window."""

from __future__ import annotations

__all__ = ["leave_a_core_to_the_gui", "quiet_gc"]


def leave_a_core_to_the_gui(threads: int | None = None) -> int:
    """Let torch use every core but one (or ``threads``), so the event loop always finds a free core while a
    translation runs (with all cores busy, scrolling stalls by 100+ ms). Returns the thread count set."""
    import torch

    from napari_medtrans.qt.translation import cores_but_one

    n = int(threads) if threads else cores_but_one()
    torch.set_num_threads(n)
    return n


def quiet_gc() -> None:
    """Collect garbage once, then freeze what is alive (``gc.freeze``) so that later full collections skip
    the ~270k long-lived objects torch, scipy and Qt bring: a full collection of those takes ~140 ms, a
    visible stall when it falls during scrolling (measured with bench/app_latency.py)."""
    import gc

    gc.collect()
    gc.freeze()
