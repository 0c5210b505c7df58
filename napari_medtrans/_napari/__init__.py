"""Thin napari adapters: reader, writers, sample data and dock widgets around the shared Qt panels."""
