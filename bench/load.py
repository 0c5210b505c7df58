"""Benchmark: load a 256x256x200 DICOM series with our reader versus dcm2niix + nibabel.

Writes the phantom's T1 (``napari_medtrans.phantom.make_subject``; smooth random data with ``--random``)
with :func:`napari_medtrans.core.io.dicom_write.write_dicom_series`, then times, best of N each, in one run
with the two readers alternating (so that load from other processes hits both alike):

* ours:   ``napari_medtrans.core.io.load(folder)`` (float32 Volume with the affine);
* theirs: ``dcm2niix -z n -b n`` in a subprocess, then ``nibabel.load(...).get_fdata(dtype=float32)``.

Prints both times, the ratio ours/theirs (goal <= 1.5), tracemalloc's peak for one of our loads (measured in a
separate, untimed run because tracing slows Python down), and peak resident set sizes (ru_maxrss) measured in
fresh processes: one Python process running our ``load()``, and dcm2niix alone (started from a small Python
process, since a child of this one would inherit this process's high-water mark).

    python bench/load.py [--shape 256 256 200] [--repeat 3] [--keep DIR] [--random]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def smooth_volume(shape, seed=0):
    """Smooth positive data (cubic upsampling of coarse noise) with an MR-like value range."""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(seed)
    coarse_shape = [max(2, s // 8) for s in shape]
    coarse = rng.random(coarse_shape).astype(np.float32)
    data = zoom(coarse, [s / c for s, c in zip(shape, coarse_shape)], order=3)[: shape[0], : shape[1], : shape[2]]
    return np.clip(data, 0, None) * 1000.0


def phantom_volume(shape):
    from napari_medtrans import phantom

    return phantom.make_subject(seed=0, shape=tuple(shape), contrasts=("T1",)).images["T1"]


def write_series(folder: Path, shape, use_phantom: bool) -> int:
    from napari_medtrans.core.io.dicom_write import write_dicom_series
    from napari_medtrans.core.volume import Volume

    if use_phantom:
        vol = phantom_volume(shape)
    else:
        vol = Volume(smooth_volume(shape), np.diag([0.9, 0.9, 1.0, 1.0]), modality="T1")
    files = write_dicom_series(vol, folder, series_description="BENCH T1", modality_label="T1")
    return len(files)


def best_of_alternating(fns, repeat):
    """Best time of each callable over ``repeat`` rounds, calling them in turn within each round."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for n, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[n] = min(best[n], time.perf_counter() - t0)
    return best


_OURS_PROBE = """
import sys
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark inherited at exec
except OSError:
    pass
from napari_medtrans.core.io import load
base = status("VmRSS:")
load(sys.argv[1])
print(base, status("VmHWM:"))
"""

_RSS_PROBE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 200), metavar=("X", "Y", "Z"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the series here and keep it")
    parser.add_argument("--random", action="store_true", help="smooth random data instead of the phantom's T1")
    args = parser.parse_args(argv)

    if shutil.which("dcm2niix") is None:
        print("dcm2niix is not on PATH; install it (Debian: apt-get install dcm2niix)", file=sys.stderr)
        return 2
    import nibabel as nib

    from napari_medtrans.core.io import load

    tmp = Path(tempfile.mkdtemp(prefix="medtrans-bench-"))
    try:
        folder = args.keep or tmp / "dicom"
        t0 = time.perf_counter()
        use_phantom = not args.random
        if use_phantom:
            try:
                from napari_medtrans import phantom  # noqa: F401
            except ImportError:
                print("napari_medtrans.phantom is not available; using smooth random data")
                use_phantom = False
        n = write_series(folder, args.shape, use_phantom)
        print(f"wrote {n} slices of {args.shape[0]}x{args.shape[1]} to {folder} in {time.perf_counter() - t0:.2f} s")

        def ours():
            return load(folder)

        def dcm2niix_cmd(out):
            return ["dcm2niix", "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(folder)]

        def theirs():
            out = Path(tempfile.mkdtemp(dir=tmp))
            subprocess.run(dcm2niix_cmd(out), check=True, capture_output=True)
            return nib.load(str(out / "vol.nii")).get_fdata(dtype=np.float32)

        vol, ref = ours(), theirs()  # also warms the page cache and imports for both
        if sorted(vol.shape) != sorted(ref.shape):
            print(f"shape mismatch: ours {vol.shape}, dcm2niix {ref.shape}", file=sys.stderr)
            return 1
        del vol, ref
        t_ours, t_theirs = best_of_alternating([ours, theirs], args.repeat)

        tracemalloc.start()
        ours()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        probe = subprocess.run([sys.executable, "-c", _OURS_PROBE, str(folder)], check=True, capture_output=True,
                               text=True)
        base_kb, ours_kb = (int(v) for v in probe.stdout.split()[-2:])
        probe = subprocess.run([sys.executable, "-c", _RSS_PROBE, *dcm2niix_cmd(Path(tempfile.mkdtemp(dir=tmp)))],
                               check=True, capture_output=True, text=True)
        child_rss = int(probe.stdout.strip().splitlines()[-1]) / 1024
        volume_mb = np.prod(args.shape) * 4 / 2**20

        ratio = t_ours / t_theirs
        print(f"ours (medtrans load):        {t_ours * 1000:8.1f} ms  (best of {args.repeat})")
        print(f"theirs (dcm2niix + nibabel): {t_theirs * 1000:8.1f} ms  (best of {args.repeat})")
        print(f"ratio ours/theirs:           {ratio:8.2f}  (goal <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")
        print(f"peak traced memory, ours:    {peak / 2**20:8.1f} MiB  (float32 volume itself: {volume_mb:.1f} MiB)")
        print(f"peak RSS, fresh process running our load(): {ours_kb / 1024:.1f} MiB "
              f"({base_kb / 1024:.1f} MiB after imports)")
        print(f"peak RSS, dcm2niix alone:    {child_rss:8.1f} MiB  (then nibabel's float32 array: {volume_mb:.1f} MiB)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
