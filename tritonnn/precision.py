"""Float32 matmul precision: IEEE by default, TF32 tensor cores only when asked."""
from .errors import TritonnnError

_state = {"float32_matmul": "highest"}


def set_float32_matmul_precision(precision: str) -> None:
    """``"highest"`` (IEEE fp32, the default) or ``"high"`` (TF32 allowed on the GPU)."""
    if precision not in ("highest", "high"):
        raise TritonnnError(f"set_float32_matmul_precision: expected 'highest' or 'high', "
                            f"got {precision!r}")
    _state["float32_matmul"] = precision


def get_float32_matmul_precision() -> str:
    return _state["float32_matmul"]


def allow_tf32() -> bool:
    return _state["float32_matmul"] == "high"
