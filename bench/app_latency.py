"""Responsiveness of medtrans-app: the longest event-loop stall while scrolling and while translating.

Three linked panes show a 256 x 256 x 155 volume. A 5 ms "heartbeat" timer records the gaps between its
ticks; a gap longer than 5 ms is time the event loop could not run (a stall). Phases:

1. scroll  - a timer moves the shared slice at 30 slices per second through the whole volume; every slice
             requested must be painted in all three panes (dropped slices are counted);
2. translate - a U-Net (random weights; speed is what counts) translates the volume in a worker, partial
             slices refreshing the synthetic pane, while the same scrolling goes on.

Goal (issue 6): longest stall < 100 ms and no dropped slice.

    .venv/bin/python bench/app_latency.py            # QT_QPA_PLATFORM=offscreen unless a display is set
    .venv/bin/python bench/app_latency.py --quick    # 128 x 128 x 60, for a fast look
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def make_volume(shape, seed=0):
    from scipy.ndimage import gaussian_filter

    from napari_medtrans.core.volume import Volume

    rng = np.random.default_rng(seed)
    data = gaussian_filter(rng.random(shape, dtype=np.float32), 3) * 1000
    return Volume(data, np.diag([0.9, 0.9, 1.0, 1.0]), modality="T1")


class Heartbeat:
    """Records the gaps between 5 ms timer ticks."""

    def __init__(self, interval_ms=5):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.gaps: list[float] = []
        self.when: list[float] = []
        self.last = None
        self.t0 = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self.last is not None:
            self.gaps.append(now - self.last)
            self.when.append(now - self.t0)
        self.last = now

    def start(self):
        self.gaps, self.when, self.last, self.t0 = [], [], None, time.perf_counter()
        self.timer.start()

    def stop(self):
        self.timer.stop()
        g = np.array(self.gaps) if self.gaps else np.array([0.0])
        at = self.when[int(g.argmax())] if self.when else 0.0
        return {"max_stall_ms": 1000 * max(0.0, g.max() - self.interval), "p99_gap_ms": 1000 * np.percentile(g, 99),
                "ticks": len(self.gaps), "at_s": at, "over_50ms": int((g > 0.05).sum())}


def run_phase(app, viewer, n_slices, fps, translate=None):
    """Scroll through every slice at ``fps`` (optionally while ``translate()`` runs); returns figures."""
    from qtpy.QtCore import QTimer

    painted = [set() for _ in viewer.panes]
    originals = [p.paintEvent for p in viewer.panes]
    for i, p in enumerate(viewer.panes):
        def paint(event, p=p, i=i, original=originals[i]):
            original(event)
            painted[i].add(p.painted_index)
        p.paintEvent = paint
    beat = Heartbeat()
    requested = []
    scroll = QTimer()
    scroll.setInterval(int(round(1000 / fps)))

    def step():
        index = len(requested)
        if index >= n_slices:
            scroll.stop()
            return
        requested.append(index)
        viewer.state.set_index(index)

    scroll.timeout.connect(step)
    viewer.state.set_index(0)
    job = translate() if translate else None
    beat.start()
    t0 = time.perf_counter()
    scroll.start()
    while scroll.isActive() or (job is not None and job.running):
        app.processEvents()
        time.sleep(0.001)
    app.processEvents()
    elapsed = time.perf_counter() - t0
    figures = beat.stop()
    for p, original in zip(viewer.panes, originals):
        p.paintEvent = original
    dropped = sum(len(set(requested) - s) for s in painted)
    figures.update(seconds=elapsed, slices=len(requested), dropped=dropped,
                   rate=len(requested) / max(elapsed if job is None else len(requested) / fps, 1e-9))
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="128 x 128 x 60 instead of 256 x 256 x 155")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=16, help="U-Net width for the translation phase")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch intra-op threads (default: what the app sets, one core left to the GUI)")
    args = ap.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "app"))
    from qtpy.QtWidgets import QApplication

    from medtrans_app.main_window import leave_a_core_to_the_gui, quiet_gc
    from medtrans_app.viewer import LinkedViewer
    from napari_medtrans.qt import translation, workers

    threads = leave_a_core_to_the_gui(args.torch_threads)

    app = QApplication.instance() or QApplication([])
    shape = (128, 128, 60) if args.quick else (256, 256, 155)
    vol = make_volume(shape)
    viewer = LinkedViewer(3)
    viewer.resize(1500, 560)
    viewer.show()
    for i in range(3):
        viewer.set_volume(i, vol, f"pane {i + 1}")
    from napari_medtrans.translators import create_translator
    from napari_medtrans.translators.checkpoint import save_checkpoint

    quiet_gc()  # as the app does once it has started
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    print(f"volume {shape}, 3 linked panes of {viewer.panes[0].width()}x{viewer.panes[0].height()} px, "
          f"platform {app.platformName()}, scrolling at {args.fps:g} slices/s, torch threads {threads} of "
          f"{os.cpu_count()} cores")

    scroll = run_phase(app, viewer, shape[2], args.fps)
    print(f"scroll     : longest stall {scroll['max_stall_ms']:6.1f} ms, p99 gap {scroll['p99_gap_ms']:5.1f} ms, "
          f"{scroll['slices']} slices in {scroll['seconds']:.1f} s, dropped {scroll['dropped']}, "
          f"stalls > 50 ms: {scroll['over_50ms']}")

    import tempfile

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "bench-unet.safetensors")
    save_checkpoint(create_translator("unet", width=args.width, depth=3), path)
    choice = translation.ModelChoice("bench", "checkpoint", path)
    from napari_medtrans.core.preprocess import acquisition_axis

    preview = vol.derive(translation.preview_buffer(shape, acquisition_axis(vol)), synthetic=True)  # as the app
    viewer.set_volume(1, preview, "synthetic (running)", synthetic_method="unet")
    done = {}

    def translate():
        request = translation.TranslateRequest(choice, {"T1": ("T1", vol)}, device="cpu", threads=args.torch_threads)
        job = workers.start_job(translation.run_translation, request, name="translation")

        def partial(payload):
            axis, start, stop, block = payload
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            preview.data[tuple(index)] = block
            viewer.panes[1].refresh()

        job.partial.connect(partial)
        job.succeeded.connect(lambda r: done.setdefault("seconds", r.seconds))
        return job

    both = run_phase(app, viewer, shape[2], args.fps, translate=translate)
    print(f"translate  : longest stall {both['max_stall_ms']:6.1f} ms, p99 gap {both['p99_gap_ms']:5.1f} ms, "
          f"translation {done.get('seconds', float('nan')):.1f} s while scrolling {both['slices']} slices, "
          f"dropped {both['dropped']}, stalls > 50 ms: {both['over_50ms']} (longest at {both['at_s']:.2f} s)")
    worst = max(scroll["max_stall_ms"], both["max_stall_ms"])
    ok = worst < 100 and scroll["dropped"] == 0 and both["dropped"] == 0
    print(f"goal (< 100 ms, no dropped slice): {'met' if ok else 'NOT met'} (worst stall {worst:.1f} ms)")
    viewer.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
