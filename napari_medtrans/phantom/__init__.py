"""The benchmark phantom: paired multi-contrast brain MRI (T1, T2, FLAIR, PD, T1c) with tissue and tumour labels.

A subject is built from real anatomy (the MNI152 templates that ship inside nilearn, by default), relaxation
that depends on where a voxel is, contrast-specific structures (vessels, choroid plexus, dura, perivascular
spaces), tumours whose enhancement cannot be read off the pre-contrast images, and an acquisition per contrast
(SNR, bias, misregistration, optional Gibbs ringing). The parts, each with its sources:

- :mod:`.anatomy` (and :mod:`.procedural`, the analytic head): tissue fractions and named regions;
- :mod:`.relaxation`: T1, T2, PD and gadolinium per tissue and region, at 3 T, with literature sources;
- :mod:`.tumour`: tumour shape, mass effect, hidden leakage;
- :mod:`.acquisition`: signal equations, flow voids, bias, noise, Gibbs ringing, misregistration;
- :mod:`.subject`: one subject; :mod:`.dataset`: a dataset with a manifest and splits;
- :mod:`.properties`: the benchmark's measured properties (docs/benchmark.md).
"""

from .acquisition import CONTRASTS, SEQUENCES, SNR_RATIO, signal
from .anatomy import LABELS, mni_templates
from .dataset import assign_splits, has_tumour, subject_seed, write_phantom_dataset
from .relaxation import R1_GADOLINIUM, TISSUES
from .subject import ANATOMIES, DEFAULT_SHAPE, PhantomSubject, make_subject

__all__ = [
    "CONTRASTS",
    "ANATOMIES",
    "DEFAULT_SHAPE",
    "LABELS",
    "TISSUES",
    "SEQUENCES",
    "SNR_RATIO",
    "R1_GADOLINIUM",
    "PhantomSubject",
    "make_subject",
    "write_phantom_dataset",
    "assign_splits",
    "has_tumour",
    "subject_seed",
    "signal",
    "mni_templates",
]
