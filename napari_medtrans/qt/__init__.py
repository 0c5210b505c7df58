"""Qt widgets shared by the napari plugin and the standalone app (qtpy; never imports napari).

``workers`` is the one module that makes threads. ``translation`` and ``inspection`` hold the panels' logic
without Qt; ``*_panel`` modules are the widgets; ``plots`` the matplotlib canvases.
"""
