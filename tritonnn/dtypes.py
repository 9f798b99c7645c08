"""tritonnn's dtypes and how they map onto numpy (and, by name, onto torch)."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from .errors import DTypeError


class DType:
    """A scalar type. ``str(tn.float32) == "float32"``."""

    __slots__ = ("name", "np", "is_floating", "is_integer", "itemsize")

    def __init__(self, name: str, np_dtype, is_floating: bool, is_integer: bool):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating = is_floating
        self.is_integer = is_integer
        self.itemsize = self.np.itemsize

    def __repr__(self) -> str:
        return f"tritonnn.{self.name}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        return (from_name, (self.name,))


float32 = DType("float32", np.float32, True, False)
float64 = DType("float64", np.float64, True, False)
float16 = DType("float16", np.float16, True, False)
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16, True, False)
int64 = DType("int64", np.int64, False, True)
int32 = DType("int32", np.int32, False, True)
uint32 = DType("uint32", np.uint32, False, True)
uint8 = DType("uint8", np.uint8, False, True)
bool_ = DType("bool", np.bool_, False, False)

ALL = (float32, float64, float16, bfloat16, int64, int32, uint32, uint8, bool_)
_BY_NAME = {d.name: d for d in ALL}
NAMES = frozenset(_BY_NAME)
_BY_NP = {d.np: d for d in ALL}
# safetensors' names for our dtypes, both ways
SAFETENSORS_NAME = {
    float32: "F32", float64: "F64", float16: "F16", bfloat16: "BF16",
    int64: "I64", int32: "I32", uint32: "U32", uint8: "U8", bool_: "BOOL",
}
FROM_SAFETENSORS = {v: k for k, v in SAFETENSORS_NAME.items()}


def from_name(name: str) -> DType:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise DTypeError(f"unknown dtype {name!r}; known: {', '.join(_BY_NAME)}") from None


def from_numpy(np_dtype) -> DType:
    try:
        return _BY_NP[np.dtype(np_dtype)]
    except (KeyError, TypeError):
        raise DTypeError(f"numpy dtype {np_dtype} has no tritonnn dtype; "
                         f"supported: {', '.join(_BY_NAME)}") from None


def as_dtype(d) -> DType:
    """Accept a DType, its name, or a numpy dtype."""
    if isinstance(d, DType):
        return d
    if isinstance(d, str):
        return from_name(d)
    return from_numpy(d)


def promote(a: DType, b: DType) -> DType:
    """Result dtype of an elementwise op on two tensors.

    Integer and bool tensors promote among themselves as numpy does; two
    different floating dtypes, or a float with an integer tensor, is an error
    the caller reports (tritonnn never silently changes float precision).
    """
    if a is b:
        return a
    return from_numpy(np.promote_types(a.np, b.np))
