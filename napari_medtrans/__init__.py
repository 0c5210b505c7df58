"""napari-medtrans: MRI contrast translation workstation (napari plugin and standalone app)."""

__version__ = "0.1.0"
