"""medtrans-app: the standalone clinician workstation of napari-medtrans (Qt; uses core and qt, never napari).

``python -m medtrans_app`` or ``medtrans-app``: ``--demo`` opens a phantom subject with the shipped demo model,
``--study BUNDLE`` opens a blinded reader study, ``--self-test`` checks the installation headless.
"""

from napari_medtrans import __version__

__all__ = ["__version__"]
