"""napari dock widget around :class:`~napari_medtrans.qt.segment_panel.SegmentPanel`: SAM2 / MedSAM2 prompts as
layers, masks as Labels layers.

Prompts live in two layers the widget adds: **segment points** (green positive, red negative clicks) and
**segment boxes** (rectangles). They are in world coordinates, so they apply to whichever image is chosen,
on its own grid. Keys, with either prompt layer selected:

==========  ===================================================================
Shift+S     segment the prompted slice(s), each on its own
Shift+P     segment the prompted slice and propagate through the volume
Shift+T     toggle the next points between positive and negative
Shift+X     clear every prompt
==========  ===================================================================

Results: a Labels layer ``segmentation of <image>`` on the image's grid (re-segmented slices replace their old
mask; a propagation replaces it all). The comparison (Compare) segments every image with the prompt layers'
points and boxes when there are any (else with boxes from the ground truth) and adds one Labels layer per image
compared.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QWidget

from ..segment import FrameGeometry, SlicePrompt
from ..qt.segment_panel import SegmentPanel
from ._common import follow_layers, get_volume, image_layer_items, panel_dock
from ._layers import layer_to_volume, volume_layer_data, world_to_index

__all__ = ["SegmentWidget", "POINTS_LAYER", "BOXES_LAYER"]

POINTS_LAYER = "segment points"
BOXES_LAYER = "segment boxes"


class SegmentWidget(QWidget):
    """Segment image layers with SAM2 / MedSAM2 from point and box prompts."""

    def __init__(self, napari_viewer):
        super().__init__()
        panel_dock(self, napari_viewer, SegmentPanel)
        self.panel.prompt_provider = self.prompts_for
        self.panel.edited_mask_provider = self.edited_mask
        self.masks: dict[str, np.ndarray] = {}  # image name -> mask on the image's (i, j, k) grid
        self.points, self.boxes = self._prompt_layers()
        self.panel.segmented.connect(self._on_segmented)
        self.panel.evaluated.connect(self._on_evaluated)
        follow_layers(self)

    # -- prompt layers ------------------------------------------------------------------------------------
    def _prompt_layers(self):
        import pandas as pd

        # The prompt layers take the images' step as their scale: an empty layer of scale 1 would make napari's
        # slice slider step 1 mm, off the images' slices (prompts are read back through data_to_world).
        steps = [np.asarray(layer.extent.step, dtype=float) for layer in self.viewer.layers
                 if type(layer).__name__ == "Image" and layer.ndim == 3]
        scale = np.min(steps, axis=0) if steps else np.ones(3)
        if POINTS_LAYER in self.viewer.layers:
            points = self.viewer.layers[POINTS_LAYER]
        else:
            features = pd.DataFrame({"prompt": pd.Categorical([], categories=["positive", "negative"])})
            points = self.viewer.add_points(np.zeros((0, 3)), ndim=3, name=POINTS_LAYER, features=features,
                                            face_color="prompt", face_color_cycle=["limegreen", "red"], size=5,
                                            scale=scale)
        if BOXES_LAYER in self.viewer.layers:
            boxes = self.viewer.layers[BOXES_LAYER]
        else:
            boxes = self.viewer.add_shapes(ndim=3, name=BOXES_LAYER, shape_type="rectangle", edge_color="yellow",
                                           face_color="transparent", edge_width=1, scale=scale)
        for layer in (points, boxes):
            layer.bind_key("Shift-S", lambda _l: self.panel.segment("slices"), overwrite=True)
            layer.bind_key("Shift-P", lambda _l: self.panel.segment("propagate"), overwrite=True)
            layer.bind_key("Shift-T", lambda _l: self.toggle_polarity(), overwrite=True)
            layer.bind_key("Shift-X", lambda _l: self.clear_prompts(), overwrite=True)
        return points, boxes

    def toggle_polarity(self) -> str:
        """Make the next points negative (or positive again); returns the new polarity."""
        now = str(self.points.feature_defaults["prompt"].iloc[0])
        new = "negative" if now == "positive" else "positive"
        self.points.feature_defaults = {"prompt": new}
        self.panel.status.setText(f"next points: {new}")
        return new

    def clear_prompts(self) -> None:
        self.points.data = np.zeros((0, 3))
        self.boxes.data = []

    def prompts_for(self, volume) -> list[SlicePrompt]:
        """The prompt layers' points and boxes as frame prompts of ``volume`` (one SlicePrompt per slice)."""
        geom = FrameGeometry.of(volume)
        per: dict[int, dict] = {}
        features = self.points.features
        labels = list(features["prompt"]) if "prompt" in features else ["positive"] * len(self.points.data)
        for point, label in zip(np.asarray(self.points.data), labels):
            s, x, y = geom.index_to_frame(world_to_index(volume, self.points.data_to_world(point)))
            entry = per.setdefault(s, {"points": [], "labels": [], "box": None})
            entry["points"].append((x, y))
            entry["labels"].append(1 if label == "positive" else 0)
        for shape in self.boxes.data:
            corners = [geom.index_to_frame(world_to_index(volume, self.boxes.data_to_world(v))) for v in shape]
            s = int(round(float(np.mean([c[0] for c in corners]))))
            xs, ys = [c[1] for c in corners], [c[2] for c in corners]
            per.setdefault(s, {"points": [], "labels": [], "box": None})["box"] = (min(xs), min(ys), max(xs), max(ys))
        return [SlicePrompt(s, points=e["points"], labels=e["labels"], box=e["box"]) for s, e in sorted(per.items())]

    # -- sources and results ------------------------------------------------------------------------------
    def _refresh_sources(self, event=None) -> None:
        # images to segment: not the maps (error maps, TSM) or a running preview, which sit on top after a run
        images = [n for n, _ in image_layer_items(self.viewer)
                  if not {"map", "preview"} & set(self.viewer.layers[n].metadata or {})]
        labels = [n for n, _ in image_layer_items(self.viewer, kinds=("labels",))]
        self.panel.set_sources(images, labels)

    def _show_mask(self, volume, mask: np.ndarray, name: str):
        data, kw, _ = volume_layer_data(volume.derive(mask.astype(np.float32)), name, layer_type="labels",
                                        mark_synthetic=False)
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.affine = kw["affine"]
            layer.metadata = kw["metadata"]
            return layer
        return self.viewer.add_labels(data, opacity=0.5, **kw)

    def edited_mask(self, name: str):
        """The "segmentation of NAME" Labels layer as a Volume when the user changed it, else None."""
        layer_name = f"segmentation of {name}"
        mask = self.masks.get(name)
        if layer_name not in self.viewer.layers or mask is None:
            return None
        edited = layer_to_volume(self.viewer.layers[layer_name])
        data = np.asarray(edited.data)
        if data.shape != mask.shape or (np.array_equal(data > 0, mask > 0) and data.max(initial=0) <= 1):
            return None  # unchanged: the model's result is exported with the model as its algorithm
        return get_volume(self.viewer, name).derive(data.astype(np.uint8))

    def _on_segmented(self, request, result) -> None:
        volume = request.volume
        mask = self.masks.get(request.image)
        if request.mode == "propagate" or mask is None or mask.shape != volume.shape:
            mask = result.mask.copy()
        else:  # re-segmented slices replace their old mask, others stay
            geom = FrameGeometry.of(volume)
            frames = geom.to_frames(mask).copy()
            frames[result.slices] = geom.to_frames(result.mask)[result.slices]
            mask = np.ascontiguousarray(geom.to_volume(frames))
        self.masks[request.image] = mask
        self._show_mask(volume, mask, f"segmentation of {request.image}")

    def _on_evaluated(self, request, report) -> None:
        for name, result in report.results.items():
            self._show_mask(request.images[name], result.mask, f"{report.model} mask of {name}")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.panel.cancel()
        super().closeEvent(event)
