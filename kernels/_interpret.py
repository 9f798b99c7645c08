"""Compiled on a GPU or run by Triton's interpreter: decided once, here, for every kernel module.

``INTERPRET`` is ``tritonnn.device.interpreting()`` read at import; every other
module of the package uses this constant and none reads the setting again.
Triton reads ``TRITON_INTERPRET`` when it is first imported, so this module
sets it before anything imports triton: ``kernels/__init__.py`` imports it
first, and every kernel module is imported through that package.
"""
import os

from ..device import interpreting

INTERPRET = interpreting()

if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"
