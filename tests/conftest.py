"""Session-wide test settings.

PySide6 occasionally aborted while the interpreter tore down Qt objects after the last test ("Fatal Python error:
none_dealloc": PySide6 6.12.0 loses a reference to None on every Qt call that returns nothing, now kept out by
requirements.txt and checked by tests/qt/test_qt_binding.py). Should a binding do that again, it happens
after every result and the summary are written, but it would turn a green run into exit code 134. So once the
session has finished, the process leaves with pytest's own exit status without the interpreter's final garbage
collection. ``MEDTRANS_TEST_SOFT_EXIT=1`` keeps the normal shutdown (to debug teardown itself).

Fixture for every test folder: ``one_torch_thread``.
"""

from __future__ import annotations

import os
import sys

import pytest

_STATUS: dict[str, int] = {}


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on a
    shared 2-core machine small ops are far faster without thread contention."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_sessionfinish(session, exitstatus):
    _STATUS["exit"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "exit" not in _STATUS or os.environ.get("MEDTRANS_TEST_SOFT_EXIT") == "1":
        return
    if config.pluginmanager.hasplugin("xdist") and hasattr(config, "workerinput"):
        return  # an xdist worker: its controller decides
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_STATUS["exit"])
