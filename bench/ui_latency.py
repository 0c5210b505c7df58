"""Event-loop stalls in napari while a translation runs from the Translate widget.

A 10 ms QTimer probe records when the event loop gets to run; the longest gap between two ticks is the longest
stall a user would feel. Runs shipped models (the demo U-Net and EDTS-Trans by default) on the phantom sample in a
real napari window and prints, per model: the longest stall in each phase of a run (start, from Run to the first
slice shown: the preview layer is added and the model built; running: slices arrive; finish: the result and the
model's maps become layers), next to what napari itself
takes to add one image layer of the same size in this process (the floor of the start and finish phases), the time
from Run to the first slice shown (issue 21: <= 2 s) and from Cancel to an idle panel (issue 21: <= 1 s). Issue 21's
stall goal (< 100 ms) is about the running phase. Asserts nothing.

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python bench/ui_latency.py [--runs 3] [--models demo,edts-t1-t2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _wait(app, cond, seconds):
    from qtpy.QtCore import QEventLoop

    deadline = time.time() + seconds
    while not cond() and time.time() < deadline:
        app.processEvents(QEventLoop.AllEvents, 20)


def _layer_floor(viewer, app) -> float:
    """Milliseconds napari takes to add (and first paint) one image layer the size of the sample: the floor of a
    run's start (its preview layer) and finish (result and map layers)."""
    times = []
    shape = viewer.layers[0].data.shape
    for _ in range(3):
        t = time.perf_counter()
        layer = viewer.add_image(np.random.default_rng(0).random(shape, dtype=np.float32), name="floor")
        app.processEvents()
        times.append((time.perf_counter() - t) * 1000)
        viewer.layers.remove(layer)
        _wait(app, lambda: False, 0.3)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="translations to time per model (default 3; EDTS 1)")
    parser.add_argument("--models", default="demo,edts-t1-t2",
                        help="shipped models to time, comma-separated (default demo,edts-t1-t2)")
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_medtrans._napari._translate import TranslateWidget
    from napari_medtrans.translators.checkpoint import read_checkpoint_metadata
    from napari_medtrans.translators.lookup import resolve_model

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-medtrans", "phantom")
    widget = TranslateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    app = QApplication.instance()
    panel = widget.panel
    layer_ms = _layer_floor(viewer, app)
    print(f"napari adds an image layer of the sample's size in {layer_ms:.0f} ms (median of 3, first paint included)",
          flush=True)
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = resolve_model(model) if model == "demo" else resolve_model(f"resources/models/{model}.safetensors")
        method = read_checkpoint_metadata(path).method
        panel.add_model_file(path)
        _wait(app, lambda: panel.spec_label.text().startswith(method), 60)
        runs = 1 if "edts" in model else args.runs
        stalls, durations, firsts = [], [], []
        for run in range(runs):
            ticks: list[float] = []
            first: list[float] = []
            timer = QTimer()
            timer.setInterval(10)
            timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
            on_partial = lambda *a: first.append(time.perf_counter()) if not first else None  # noqa: E731
            panel.partial_ready.connect(on_partial)
            loop = QEventLoop()
            widget.layers_added.connect(loop.quit)
            QTimer.singleShot(600_000, loop.quit)  # never wait forever
            marks: dict[str, float] = {}
            on_result = lambda *a: marks.setdefault("result", time.perf_counter())  # noqa: E731
            panel.translated.connect(on_result)  # after the widget turned the preview into the result
            timer.start()
            t0 = time.perf_counter()
            panel.run()
            loop.exec()
            widget.layers_added.disconnect(loop.quit)
            panel.partial_ready.disconnect(on_partial)
            panel.translated.disconnect(on_result)
            timer.stop()
            ticks.insert(0, t0)  # the first gap spans Run itself (the preview layer is added there)
            ends = np.asarray(ticks[1:])
            gaps = np.diff(ticks) * 1000
            shown = first[0] if first else marks["result"]
            phase = {"start": gaps[ends <= shown],
                     "running": gaps[(ends > shown) & (ends < marks["result"])],
                     "finish": gaps[ends >= marks["result"]]}
            stalls.append({k: float(v.max()) if v.size else 0.0 for k, v in phase.items()})
            durations.append(time.perf_counter() - t0)
            firsts.append(first[0] - t0 if first else float("nan"))
            print(f"{model} run {run + 1}: translation {durations[-1]:.1f} s, first slice shown after "
                  f"{firsts[-1]:.2f} s, longest stall start / running / finish "
                  f"{' / '.join(f'{v:.0f}' for v in stalls[-1].values())} ms, 99th percentile gap while running "
                  f"{np.percentile(phase['running'], 99) if phase['running'].size else 0:.0f} ms", flush=True)
        # Cancel as soon as the first slices show: time from Cancel to an idle panel (Run enabled again)
        first = []
        on_partial = lambda *a: first.append(time.perf_counter()) if not first else None  # noqa: E731
        panel.partial_ready.connect(on_partial)
        panel.run()
        _wait(app, lambda: bool(first), 120)
        t_cancel = time.perf_counter()
        panel.cancel()
        _wait(app, lambda: panel.run_button.isEnabled(), 120)
        idle = time.perf_counter() - t_cancel
        panel.partial_ready.disconnect(on_partial)
        kept = [layer.name for layer in viewer.layers if layer.name.startswith("SYNTHETIC (partial")]
        worst = {k: max(st[k] for st in stalls) for k in stalls[0]}
        print(f"{model}: longest stall while running {worst['running']:.0f} ms (goal < 100), at the start "
              f"{worst['start']:.0f} ms and the finish {worst['finish']:.0f} ms (one new layer: "
              f"{layer_ms:.0f} ms); first slice {np.median(firsts):.2f} s (goal <= 2), Cancel to idle {idle:.2f} s "
              f"(goal <= 1); kept: {kept[-1] if kept else 'nothing'}", flush=True)
        for layer in [la for la in viewer.layers if la.name.startswith("SYNTHETIC")]:
            viewer.layers.remove(layer)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
