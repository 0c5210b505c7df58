"""Imports every built-in translator module so that their @register_translator decorators run."""

from . import pix2pix, unet  # noqa: F401
from . import edts  # noqa: F401
from . import cdm  # noqa: F401
from . import mrnet  # noqa: F401
from . import hifisyn  # noqa: F401
from . import disdiff  # noqa: F401
from . import cyclegan  # noqa: F401
