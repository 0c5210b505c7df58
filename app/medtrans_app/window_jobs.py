"""Job functions of the main window, run in :mod:`napari_medtrans.qt.workers` jobs (off the GUI thread).

Each takes the job as its first argument (for progress and cancellation) and returns what the window adds
when the job succeeds: an error map, or ``[(name, Volume), ...]`` to open.
"""

from __future__ import annotations

import numpy as np


def _error_map(job, synthetic, reference):
    return np.abs(synthetic.data - reference.data)


def _phantom(job, seed, shape):
    from napari_medtrans.phantom import make_subject

    subject = make_subject(seed, shape=shape, tumour=True, contrasts=("T1", "T2", "FLAIR"))
    return [(f"{m} (phantom {seed})", subject.images[m]) for m in ("T1", "T2", "FLAIR")]


def _load_files(job, files):
    """Load several files as one case, in the order given (a job function)."""
    from .worklist import load_case

    out = []
    for i, path in enumerate(files):
        out.extend(load_case(job, path))
    return out
