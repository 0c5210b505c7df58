"""glibc keeps large blocks in its heap once the engine has run (core/allocator.py): tensors above 32 MiB stop
costing page faults on every allocation. Checked in child processes, so the settings never leak into the suite."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Where a 64 MiB array lives after the engine translated a tiny volume: glibc's mallinfo2() counts the bytes it
# holds in separate mmap blocks (hblkhd), which are returned to the kernel on free and faulted in afresh each time.
_CODE = """
import ctypes, numpy as np, torch
from napari_medtrans.core.allocator import keep_large_buffers
from napari_medtrans.core.engine import translate_volume
from napari_medtrans.translators import create_translator
translate_volume(np.random.rand(8, 8, 2).astype('float32'), create_translator('unet', width=4, depth=2),
                 device='cpu')
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
a = np.ones(16 * 2**20, np.float32)
print(keep_large_buffers(), libc.mallinfo2().hblkhd)
"""


def _run(env_extra):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env_extra
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, env=env, check=True)
    on, mmapped = out.stdout.split()
    return on == "True", int(mmapped)


def test_after_a_translation_large_buffers_come_from_the_heap():
    on, mmapped = _run({})
    off, mmapped_system = _run({"MEDTRANS_MALLOC": "system"})
    assert on and not off
    assert mmapped_system >= 64 * 2**20  # glibc's default: a block of its own, given back and faulted in again
    assert mmapped < 64 * 2**20, mmapped


def test_a_user_setting_is_left_alone():
    on, _ = _run({"MALLOC_MMAP_THRESHOLD_": "1048576"})
    assert not on
