"""`medtrans-app --self-test`: start headless, load a phantom, translate a few slices, check, exit 0.

It drives the real window: the phantom is made in a worker, the translation runs through the Translate panel's
job with progress and partial slices, and the synthetic pane must end up showing a finite image under its
SYNTHETIC banner. The model is the shipped demo model; when it is missing, a small untrained U-Net written
to a temporary file stands in (the check is of the pipeline, and the output says so).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

__all__ = ["run_self_test"]


def _wait(app, done, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while not done() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    return bool(done())


def run_self_test(timeout_s: float = 180.0, shape=(48, 48, 6), out=print) -> int:
    """Run the self-test in the current QApplication (made when missing); returns the exit code."""
    from qtpy.QtWidgets import QApplication

    from napari_medtrans.core.errors import WeightsError
    from napari_medtrans.translators.lookup import resolve_model

    from .main_window import MainWindow
    from .settings import AppSettings

    t0 = time.perf_counter()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        errors: list[str] = []
        window = MainWindow(AppSettings(Path(tmp) / "settings.ini"))
        window.show_error = lambda message, exc=None: errors.append(message)  # headless: collect
        from napari_medtrans.qt import workers

        workers.set_error_handler(window.show_error)
        try:
            model = resolve_model("demo")
            what = f"demo model {model.name}"
        except WeightsError:
            from napari_medtrans.translators import create_translator
            from napari_medtrans.translators.checkpoint import save_checkpoint

            model = Path(tmp) / "selftest-untrained-unet.safetensors"
            save_checkpoint(create_translator("unet", width=4, depth=2), model)
            what = "an untrained U-Net (the demo model is not installed)"
        window.show()
        job = window.load_phantom(seed=1000, shape=shape)
        if not _wait(app, lambda: not job.running and "T1 (phantom 1000)" in window.volumes, timeout_s):
            out(f"self-test FAILED: the phantom was not loaded ({'; '.join(errors) or 'timeout'})")
            return 1
        panel = window.translate_panel
        panel.add_model_file(model)
        done: dict = {}
        panel.translated.connect(lambda request, result: done.setdefault("result", result))
        panel.stopped.connect(lambda request, what: done.setdefault("stopped", what))
        box = panel.inputs._boxes.get("T1")
        if box is not None:
            box.setCurrentText("T1 (phantom 1000)")
        translation = panel.run()
        if translation is None or not _wait(app, lambda: bool(done) and not translation.running, timeout_s):
            out(f"self-test FAILED: translation did not finish ({'; '.join(errors) or 'timeout'})")
            return 1
        result = done.get("result")
        pane = window.viewer.panes[1]
        app.processEvents()
        pane.repaint()
        ok = (result is not None and result.volume.synthetic and pane.volume is not None
              and pane.banner.startswith("SYNTHETIC") and bool((result.volume.data == result.volume.data).all())
              and float(abs(result.volume.data).max()) > 0 and pane.paint_count > 0)
        window.close()
        if not ok:
            out(f"self-test FAILED: no synthetic image on screen ({'; '.join(errors) or done})")
            return 1
        out(f"self-test ok: phantom {shape}, {result.volume.shape[2]} slices translated with {what} in "
            f"{result.seconds:.2f} s on {result.device}; total {time.perf_counter() - t0:.1f} s")
        return 0
