"""The backend contract: every function a device backend provides, with its semantics.

A backend is a package of op families (``memory``, ``random``, ``elementwise``,
``reduction``, ``matmul``, ``softmax``, ``norm``, ``optim``) that together define every
function below, each in the family that owns it and with exactly the parameter
list of its stub here. ``tritonnn.fallback_cpu`` (numpy) and
``tritonnn.kernels`` (Triton) are the two backends; neither imports the other,
and both are checked against this module (``problems``) by
``tests/test_kernel_mirrors.py``. The op table (``tritonnn/ops.py``) validates
arguments and then calls ``B.<name>(...)`` on the device's backend, so a
backend may assume shapes, dtypes and devices are already consistent.

Terms used below: a *buffer* is the backend's array (``numpy.ndarray`` on cpu,
a torch tensor used as raw device memory on cuda) of any strides; *low
precision* is float16 and bfloat16, which every function computes in float32
and rounds once when storing; a *shape* is a tuple of ints; a *dtype* is a
``tritonnn.dtypes.DType``. A function returns a new buffer unless it says
"view" (shares memory with its input) or "in place" (writes into an argument).
Results that differ between backends only by float rounding are allowed (the
parity tests bound them); anything else is a contract bug.

This module imports nothing but the standard library: it is loaded on the cpu
path of ``import tritonnn``.
"""
from __future__ import annotations

import inspect
import types

# ----------------------------------------------------------------------------------------------
# values only the device can check (issue 12: no host sync inside a training step)
# ----------------------------------------------------------------------------------------------


class RangeCheck:
    """Integer values an op needs in ``[low, high)`` (``ignore``, if not None, allowed too), and
    the error for one that is not: ``error`` (an exception class) with ``message``, in which
    ``{}`` stands for the bad value.

    The op table builds one for each class target or index tensor it hands a backend (the
    backend reads the bounds and the message; the values stay where they are). A backend
    whose buffers the host reads for free (numpy) raises before computing anything; one
    whose buffers live on a device (Triton) checks the values in the kernel that reads them
    and raises at the next synchronization (``buffers.raise_deferred``). Either way a bad
    value is never used to address memory, and the error names the same value: the lowest
    one below the range if there is one, else the highest one at or above ``high``.
    """

    __slots__ = ("low", "high", "ignore", "error", "message")

    def __init__(self, low, high, ignore, error, message):
        self.low, self.high, self.ignore, self.error, self.message = \
            low, high, ignore, error, message

    def _key(self):
        return (self.low, self.high, self.ignore, self.error, self.message)

    def __eq__(self, other):
        return type(other) is RangeCheck and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"RangeCheck{self._key()!r}"

    def exception(self, below, above):
        """The error for the lowest value below the range (None: none was) or, failing that,
        the highest one above it."""
        return self.error(self.message.replace("{}", str(above if below is None else below), 1))

# ----------------------------------------------------------------------------------------------
# memory: creation, conversion, views, indexing, in-place writes, joins
# ----------------------------------------------------------------------------------------------


def from_numpy(array, dtype):
    """A buffer holding a copy of the host ``numpy.ndarray`` ``array`` converted to ``dtype``."""


def to_numpy(x):
    """``x``'s values as a host ``numpy.ndarray`` (bfloat16 as ``ml_dtypes.bfloat16``).

    On cpu this may be ``x`` itself: callers copy before writing to it.
    """


def dtype_of(x):
    """The tritonnn dtype of buffer ``x``."""


def empty(shape, dtype):
    """An uninitialised row-major buffer of ``shape`` and ``dtype``."""


def full(shape, value, dtype):
    """A row-major buffer of ``shape`` with every element the Python number ``value``
    converted to ``dtype``."""


def arange(start, stop, step, dtype):
    """The 1-D buffer ``start, start + step, ...`` up to ``stop`` (exclusive), in ``dtype``.

    All-int arguments count exactly in int64; otherwise element ``i`` is
    ``start + i * step`` in float64, with ``ceil((stop - start) / step)`` elements
    (none when that is negative). Converted to ``dtype`` once at the end.
    """


def cast(x, dtype):
    """A new row-major buffer with ``x``'s values converted to ``dtype``, always a copy.

    float -> integer truncates toward zero; anything -> bool is ``!= 0``.
    """


def contiguous(x):
    """``x`` itself when it is row-major contiguous, else a row-major copy of it."""


def reshape(x, shape):
    """``x`` with ``shape`` (same number of elements): a view when ``x``'s strides allow
    it, else a reshaped copy (as ``torch.reshape``)."""


def view(x, shape):
    """``x`` seen with ``shape`` (same number of elements) without a copy, or None when
    ``x``'s strides do not allow that (as ``torch.Tensor.view``)."""


def permute(x, dims):
    """A view of ``x`` with its dims reordered: result dim ``i`` is ``x``'s dim ``dims[i]``."""


def expand(x, shape):
    """A read-only view of ``x`` broadcast to ``shape`` (numpy rules; stride 0 on the
    broadcast dims). Never write through it."""


def getitem(x, index, checks=None):
    """``x[index]`` with numpy's indexing rules.

    ``index`` is an int, slice, None, Ellipsis, an int64 or bool index buffer,
    or a tuple of those. Basic indexing (no index buffer) returns a view;
    advanced indexing (int64 or bool buffers, negative indices counting from
    the end) gathers into a new buffer, index dims placed where numpy places
    them. ``checks`` (a tuple as long as ``index`` as a tuple, or None) holds a
    ``RangeCheck`` for each int64 index buffer whose values are still to be checked
    (None elsewhere); indices not checked are already in range. An index out of
    range reads nothing (the element is 0) and is reported as ``RangeCheck`` says.
    """


def setitem(x, index, value, checks=None):
    """``x[index] = value`` in place, with ``getitem``'s indexing and ``checks``; returns None.

    ``value`` is a buffer of ``x``'s dtype or a Python number, broadcast to the
    shape of ``x[index]``; it may overlap ``x``. With repeated advanced indices,
    which value lands is unspecified (numpy keeps the last). A position whose index
    is out of range is not written.
    """


def copy_(dst, src):
    """Write ``src`` (broadcast to ``dst``'s shape, converted to ``dst``'s dtype as
    ``cast``) into ``dst`` in place; returns None. ``src`` may overlap ``dst``."""


def accumulate_(dst, src):
    """``dst += src`` in place (gradient accumulation); returns None.

    ``src`` has ``dst``'s dtype and broadcasts to ``dst``'s shape; low precision
    adds in float32 and rounds once.
    """


def index_add(dst, index, src):
    """``dst[index] += src`` in place and returns ``dst``; ``index`` as in ``getitem``.

    ``src`` broadcasts to the shape of ``dst[index]``. Repeated advanced indices
    accumulate every contribution (as ``numpy.add.at``), in a fixed order: the
    result does not depend on scheduling.
    """


def exclusively_owned(buf, extra_refs):
    """True when no view and no reference besides ``extra_refs`` known ones holds
    ``buf``'s memory, so the tape may reuse it in place."""


def overlapping(x):
    """True when two elements of ``x`` share one memory location (a broadcast view, stride 0
    on a dim longer than 1), so that an in-place write into ``x`` would be ambiguous."""


def cat(xs, dim):
    """The buffers ``xs`` (one dtype, equal shapes but along ``dim``) joined along
    ``dim`` (may be negative)."""


def stack(xs, dim):
    """The equal-shape buffers ``xs`` joined along a new dim at ``dim`` (may be negative)."""


# ----------------------------------------------------------------------------------------------
# random: counter-based numbers, the same on every device
# ----------------------------------------------------------------------------------------------


def rand(shape, dtype, seed, offset):
    """Uniform [0, 1) numbers of ``shape`` in ``dtype``, computed in float32.

    Element ``i`` (row-major) comes from Philox-4x32-10 with key ``seed`` and the
    64-bit counter ``offset + i``, as ``tl.rand``: both backends draw the same bits.
    """


def randn(shape, dtype, seed, offset):
    """Standard normal numbers of ``shape`` in ``dtype``: Box-Muller on two Philox words
    of counter ``offset + i``, as ``tl.randn``, computed in float32."""


def dropout(x, p, seed, offset):
    """``x * m`` elementwise, a new row-major buffer in ``x``'s dtype, computed in float32
    (float64 for float64) and rounded once.

    ``m_i`` is ``1 / (1 - p)`` (computed in float64, rounded to the computing dtype) where
    element ``i``'s uniform number is ``>= p``, else 0 (everywhere 0 for ``p == 1``). ``i`` is the row-major index in ``x``'s shape, whatever
    its strides; its uniform number comes from Philox word ``i % 4`` of counter ``offset +
    i // 4`` (key ``seed``; the draw takes ``ceil(n / 4)`` counters), converted to float32
    in [0, 1) as ``rand`` converts its word, and compared with ``p`` in float32. The
    backward is this very function on the gradient with the same ``(seed, offset)``: the
    mask is regenerated, never stored. A dropped NaN or inf gives NaN (``x * 0``), as
    PyTorch's multiply by its mask.
    """


def randint(shape, low, high, seed, offset):
    """int64 numbers of ``shape`` uniform in ``[low, high)`` (Python ints in int64's range,
    ``low < high``).

    Element ``i`` is ``low + r mod (high - low)`` in 64-bit unsigned arithmetic, with ``r =
    c1 * 2**32 + c0`` from the first two Philox words of counter ``offset + i``: integer
    math, so both backends draw the same numbers. (The modulo's bias is below ``(high -
    low) / 2**64``.)
    """


def randperm(n, seed, offset):
    """A random permutation of ``0 .. n - 1`` (int64, shape ``(n,)``): the indices sorted by
    random keys.

    With ``b`` the bit length of ``n`` and ``r`` element ``i``'s 64-bit word (as in
    ``randint``, counter ``offset + i``), the key of ``i`` is ``(r >> (b + 1)) << b | i``:
    63 - b random bits, ties broken by the index. Keys are distinct, so every correct sort
    gives the same permutation on every backend.
    """


def multinomial(probs, num_samples, replacement, seed, offset):
    """``num_samples`` category indices for each row of the (R, C) weights ``probs`` (any
    float dtype): an int64 (R, num_samples) buffer.

    The caller has checked the weights: finite, >= 0, a positive sum in every row, and
    ``num_samples <= C`` without replacement.

    With replacement, exactly in integers: row ``r``'s weights become ``floor(w / max(row)
    * 2**S)`` (float64 division; ``S = 62 -`` the bit length of C), their running sums a
    cumulative table; sample ``s`` takes the 64-bit word ``u`` of counter ``offset + r *
    num_samples + s`` (as ``randint``), the target ``floor(u * total / 2**64)``, and the
    first category whose running sum exceeds it.

    Without replacement, PyTorch's exponential race (successive sampling in proportion to
    the weights): category ``j`` gets the key ``-log(1 - U) / w`` in float64, ``U`` the
    float32 uniform number of counter ``offset + r * C + j`` (as ``rand``), +inf where
    ``w == 0``; the samples are the ``num_samples`` smallest keys, smallest first, ties
    (the zero weights, once the positive ones run out) by index. Both backends compute the
    same keys up to the last bit of a float64 log.
    """


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------


def unary(x, op):
    """``op(x)`` elementwise, ``op`` one of neg, exp, log, sqrt, abs, tanh, sigmoid, and the
    activations rsqrt (``1 / sqrt(x)``), silu (``x * sigmoid(x)``), gelu (``x * Phi(x)``,
    ``Phi(x) = (1 + erf(x / sqrt(2))) / 2``) and gelu_tanh (``x / 2 * (1 + tanh(sqrt(2 / pi)
    * (x + 0.044715 x^3)))``, PyTorch's ``approximate="tanh"``); a row-major buffer of
    ``x``'s shape and dtype."""


def unary_bwd(grad, saved, op):
    """``grad * op'(x)`` elementwise in one pass, for the ``unary`` ops whose derivative needs
    more than one product: ``saved`` is the forward's output ``y`` for tanh (``1 - y^2``),
    sigmoid (``y (1 - y)``), sqrt (``1 / (2 y)``) and rsqrt (``-y^3 / 2``), and its input
    ``x`` for silu (``s (1 + x (1 - s))``, ``s = sigmoid(x)``), gelu (``Phi(x) + x phi(x)``,
    ``phi`` the standard normal density) and gelu_tanh (the derivative of its formula).
    ``grad`` and ``saved`` share one shape; the result is a row-major buffer in ``grad``'s
    dtype (low precision computed in float32, rounded once)."""


COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
"""The ``binary`` ops whose result is bool."""


def binary(a, b, op):
    """``a op b`` elementwise with numpy broadcasting.

    ``op``: add, sub, mul, div, floordiv, mod, pow, maximum, minimum (a NaN on
    either side wins), eq, ne, lt, le, gt, ge. ``a`` is a buffer; ``b`` a buffer
    of ``a``'s dtype or a Python number that ``a``'s dtype holds (a float meets a
    float buffer in the buffer's precision). The result has the broadcast shape
    and ``a``'s dtype, bool for the comparisons.

    Integers compute in their dtype and wrap as it does. ``floordiv`` and ``mod``
    are Python's (and torch's): the quotient rounds toward -inf and the remainder
    takes the divisor's sign; an integer divisor is never 0 (the caller checks),
    ``x // -1`` is ``-x`` (the minimum wraps to itself). For floats they are
    torch's formulas on C's fmod: ``mod = fmod(a, b)`` moved into ``b``'s sign;
    ``floordiv = floor((a - mod) / b)`` stepped down where the fmod and ``b``
    differ in sign, a zero quotient carrying the sign of ``a / b``, and ``a / b``
    (inf or NaN) for ``b == 0``. The kernels' fmod is exact while ``|a / b| <
    2**53`` (float32 and lower computed in float64), the numpy mirror's always.
    Integer ``pow`` is exact and wraps; a negative exponent (signed dtypes) gives
    torch's integer answer, 1 for ``a == 1``, +-1 for ``a == -1`` by the
    exponent's parity, else 0. On bool buffers ``add`` is logical or and ``mul``
    logical and; sub, floordiv, mod and pow are never asked of bools.
    """


def where(cond, a, b):
    """``a`` where the bool buffer ``cond`` is true, else ``b``; all three broadcast
    together, ``a`` and ``b`` of one dtype (the result's)."""


def relu_fwd(x):
    """``max(x, 0)`` elementwise, in ``x``'s dtype; NaN stays NaN, as in PyTorch."""


def relu_bwd(grad, out):
    """``grad`` where the ReLU output ``out`` is > 0, else 0 (0 at exactly 0, as in
    PyTorch); ``grad`` and ``out`` of one shape, the result in ``grad``'s dtype."""


# ----------------------------------------------------------------------------------------------
# reduction
# ----------------------------------------------------------------------------------------------


def reduce(x, dims, keepdim, op):
    """``op`` (sum, mean, max, min) of ``x`` over the dims in the tuple ``dims``
    (negative allowed; empty means every dim), keeping them as size 1 if ``keepdim``.

    Low precision accumulates in float32; sums of bool and integers are int64,
    every other result has ``x``'s dtype. max/min propagate NaN.
    """


def sum_to_shape(g, shape):
    """A gradient ``g`` of a broadcast result summed back to the operand's ``shape``
    (the backward of broadcasting): ``g`` itself when its shape already is
    ``shape``, else summed over the leading dims and the dims ``shape`` has as 1,
    in ``g``'s dtype."""


def argmax(x, dim, keepdim):
    """Index (int64) of the first maximum along the int ``dim``, or of the flattened
    (row-major) ``x`` when ``dim`` is None; a NaN counts as the maximum (the
    first one wins), as ``numpy.argmax``."""


def max_bwd(grad, x, indices, dim, keepdim):
    """The gradient of ``x.max(dim)``: zeros of ``x``'s shape in ``grad``'s dtype with
    ``grad`` written at the ``argmax`` ``indices`` along the non-negative ``dim``
    (``grad`` and ``indices`` have the reduced shape, keeping ``dim`` if ``keepdim``)."""


# ----------------------------------------------------------------------------------------------
# matmul
# ----------------------------------------------------------------------------------------------


def matmul(a, b):
    """``a @ b`` for 2-D or batched operands ``(..., M, K) @ (..., K, N)``, batch dims
    broadcast as numpy does; ``ops.matmul`` turns 1-D operands into 2-D first.
    Both operands share a dtype, the result's; low precision accumulates in float32."""


def linear_fwd(x, w, b, relu):
    """``x @ w.T + b``, then ReLU if ``relu``: x (M, K), w (N, K), b (N,) or None ->
    (M, N) in ``x``'s dtype, the bias and ReLU applied before the single rounding."""


def linear_bwd(grad_out, x, w, out, relu, need_dx, need_dw, need_db, dw_into=None,
               db_into=None):
    """The gradients ``(dx, dw, db)`` of ``linear_fwd``, None where not needed.

    With ``g = grad_out`` (M, N), zeroed where the saved output ``out`` is <= 0
    when ``relu``: ``dx = g @ w`` (M, K), ``dw = g.T @ x`` (N, K), ``db = g.sum(0)``
    (N,), all in ``grad_out``'s dtype. ``dw_into``/``db_into``: None, or a row-major
    buffer of ``dw``'s/``db``'s shape and dtype (a parameter's gradient home) that the
    gradient is written into, in place, and returned as it.
    """


# ----------------------------------------------------------------------------------------------
# softmax: softmax and log-softmax, the fused cross-entropy, BCE on logits
# ----------------------------------------------------------------------------------------------


def softmax_fwd(x, dim):
    """``exp(x - max) / sum(exp(x - max))`` along ``dim`` (may be negative), in ``x``'s
    dtype; float64 computes in float64, everything else in float32."""


def softmax_bwd(grad, y, dim):
    """``y * (grad - sum(grad * y))`` along ``dim``, ``y`` the softmax output; in
    ``grad``'s dtype."""


def log_softmax_fwd(x, dim):
    """``x - logsumexp(x)`` along ``dim`` (an all -inf row gives -inf, not NaN)."""


def log_softmax_bwd(grad, y, dim):
    """``grad - exp(y) * sum(grad)`` along ``dim``, ``y`` the log-softmax output; in
    ``grad``'s dtype."""


def softmax_cross_entropy_fwd(logits, target, ignore_index, label_smoothing, reduction, check):
    """Softmax cross-entropy of ``logits`` (N, C) against int64 class indices ``target`` (N,).

    Row ``i`` loses ``lse_i - (1 - eps) * x[i, t_i] - eps / C * sum_c x[i, c]``
    (``eps = label_smoothing``, PyTorch's smoothing), 0 where ``t_i ==
    ignore_index``. Returns ``(loss, stats)``: ``loss`` per row for reduction
    "none", else a 0-d sum or mean over the rows not ignored (NaN when all are),
    in the logits' dtype; ``stats`` (N + 1,) in float32 (float64 for float64
    logits), saved for the backward: the rows' log-sum-exps, then the count of
    rows not ignored. ``check`` (a ``RangeCheck`` for ``[0, C)`` and
    ``ignore_index``; None when the targets are known to be in range) reports the
    targets out of range; a row with one loses NaN (where the error comes later)
    and reads no logit at its target.
    """


def softmax_cross_entropy_bwd(grad_loss, logits, target, stats, ignore_index, label_smoothing,
                              reduction, inplace):
    """d loss / d logits: ``(softmax(x) - (1 - eps) * onehot(t) - eps / C) * scale`` per row.

    ``scale`` is the upstream ``grad_loss`` (per row (N,) for "none", 0-d
    otherwise; None stands for an upstream 1, as ``loss.backward()`` seeds it),
    divided by the count of rows not ignored for "mean"; ignored rows get 0.
    ``stats`` is the forward's. With ``inplace`` the gradient is written into
    ``logits`` and ``logits`` returned (the tape allows it only when nothing else
    holds that buffer); otherwise a new (N, C) buffer in the logits' dtype.
    """


def bce_with_logits_fwd(x, y, reduction):
    """Binary cross-entropy on logits, ``max(x, 0) - x * y + log(1 + exp(-|x|))``
    elementwise (stable for any x), ``x`` and ``y`` of one shape and float dtype.

    Reduction "none": that, in ``x``'s dtype; "sum"/"mean": its 0-d sum or mean,
    accumulated in float32 (float64 for float64), returned in ``x``'s dtype.
    """


def bce_with_logits_bwd(grad_loss, x, y, reduction):
    """``(dx, dy)`` of ``bce_with_logits_fwd``: ``dx = (sigmoid(x) - y) * g`` and
    ``dy = -x * g``, with ``g`` the upstream ``grad_loss`` (x's shape for "none",
    0-d otherwise; divided by ``x.size`` for "mean"); in x's and y's dtypes."""


# -- chunked linear + cross-entropy (the language-model head and its loss) --------------------


def linear_cross_entropy_fwd(h, w, b, target, ignore_index, label_smoothing, reduction, budget,
                             need_dh, need_dw, need_db, check):
    """Cross-entropy of the logits ``h @ w.T + b`` against ``target``, the logits never whole.

    ``h`` (N, H), ``w`` (V, H), ``b`` (V,) or None, one float dtype, any strides;
    ``target`` int64 (N,), its values checked as ``check`` says (as
    ``softmax_cross_entropy_fwd``'s). Rows run in chunks, in order, each chunk's (rows, V)
    working arrays together within ``budget`` bytes (one row at the least), beside the (N,)
    loss and lse vectors and any float32 accumulators, which the budget pays for first
    (leaving the chunks at least a quarter of it). Returns ``(loss, lse, dh, dw, db)``:
    ``loss`` as ``softmax_cross_entropy_fwd`` gives it for the whole logits and ``lse`` (N,)
    the rows' log-sum-exps; for reduction "sum"/"mean", ``dh`` (N, H), ``dw`` (V, H) and
    ``db`` (V,) are the gradients of ``loss`` (upstream 1) computed in the same
    pass where ``need_dh``/``need_dw``/``need_db`` (else None; always None for
    "none"), in h's dtype; each chunk writes its rows of ``dh``.

    ``dw`` and ``db`` add up the chunks in a fixed order. float32 and float64: in
    the returned buffers. float16/bfloat16, the same decision on every backend:
    when the float32 accumulators of what is wanted, ``(V * H [dw] + V [db]) * 4``
    bytes, take at most ``budget // 2``, in float32, rounded once at the end;
    otherwise in the returned 16-bit buffers themselves: each chunk's product
    summed in float32, added in float32 to the stored value and rounded to
    nearest even once per chunk. Each rounding moves a value by at most half an
    ulp of the running sum S_j it rounds, so with k chunks the result is within
    k half-ulps of ``max_j |S_j|`` of the exact sum of the float32 chunk
    products (``<= k * u * max_j |S_j|``, u = 2**-8 bfloat16, 2**-11 float16),
    where float32 accumulation gives one half-ulp of the final value;
    independent roundings spread about 0.29 * sqrt(k) ulps. (A float16 running
    sum beyond 65504 becomes inf.)
    """


def linear_cross_entropy_bwd(grad_loss, h, w, b, target, lse, ignore_index, label_smoothing,
                             reduction, budget, need_dh, need_dw, need_db):
    """``(dh, dw, db)`` of ``linear_cross_entropy_fwd``'s loss for the upstream ``grad_loss``.

    ``grad_loss`` is (N,) for reduction "none", 0-d otherwise (divided by the
    count of rows not ignored for "mean"); ``lse`` the forward's. Each chunk's
    logits are computed again (within ``budget`` bytes, as the forward), turned
    into ``(softmax - (1 - eps) * onehot - eps / V) * scale`` and multiplied out:
    ``dh = dlogits @ w``, ``dw = sum over chunks of dlogits.T @ h``, ``db = sum of
    dlogits over rows``; None where not needed; in h's dtype, ``dw`` and ``db``
    added up as ``linear_cross_entropy_fwd`` adds them (float32 rounded once, or
    16-bit rounded once per chunk, by the same rule).
    """


def linear_cross_entropy_scale_(grad_loss, dh, dw, db):
    """``dh``, ``dw`` and ``db`` (as ``linear_cross_entropy_fwd`` returned them, contiguous;
    any may be None) multiplied in place by the 0-d upstream ``grad_loss`` of their dtype
    (low precision in float32, rounded once); returns ``(dh, dw, db)``. The gradients of
    "sum"/"mean" are linear in the upstream gradient, so this is their backward."""


# ----------------------------------------------------------------------------------------------
# norm: layer normalization, variance, vector norms, the squared-error loss (sums of squares)
# ----------------------------------------------------------------------------------------------


def layer_norm_fwd(x, weight, bias, ndim, eps):
    """Layer normalization of ``x`` over its last ``ndim`` dims (``N`` elements per row, ``M``
    rows: the leading dims): ``y = (x - mean) * rstd * weight + bias``, ``rstd = 1 /
    sqrt(var + eps)``, ``var`` the biased variance of the row (two passes: the mean, then
    the centred sum of squares, exact at large offsets).

    ``weight``/``bias`` are None or buffers of ``x``'s last ``ndim`` dims, in ``x``'s dtype;
    ``eps`` a Python float. Returns ``(y, mean, rstd)``: ``y`` row-major in ``x``'s dtype,
    ``mean`` and ``rstd`` (M,) in float32 (float64 for float64 input), saved for the backward.
    """


def layer_norm_bwd(grad, x, weight, mean, rstd, ndim, need_dx, need_dw, need_db):
    """The gradients ``(dx, dw, db)`` of ``layer_norm_fwd``, None where not needed (``dw``/``db``
    also None without a weight / bias).

    With ``xhat = (x - mean) * rstd`` and ``wg = grad * weight`` per row: ``dx = rstd * (wg -
    mean_row(wg) - xhat * mean_row(wg * xhat))``; ``dw = sum_rows(grad * xhat)``, ``db =
    sum_rows(grad)``, summed in a fixed order (deterministic), in the weight's dtype.
    """


def var_mean(x, dims, correction):
    """``(var, mean)`` of ``x`` over the dims in the tuple ``dims`` (non-negative; empty: every
    dim), both keeping the reduced dims as size 1, in ``x``'s dtype.

    ``var = sum((x - mean)^2) / max(K - correction, 0)`` with ``K`` the reduced count (NaN
    or inf where that divisor is 0, as PyTorch); two passes, the centred squares summed in
    float32 (float64 for float64); few long rows are split in chunks whose (mean, centred
    sum) merge in a fixed order.
    """


def var_bwd(grad, x, mean, std, dims, correction):
    """``g * 2 * (x - mean) / max(K - correction, 0)``: the gradient of ``var_mean``'s variance
    (``std`` None, ``g = grad``) or of its square root (``std`` the forward's standard
    deviation: ``g = grad / (2 std)``, 0 where ``std`` is 0, as PyTorch's). ``grad``,
    ``mean`` and ``std`` keep the reduced ``dims`` as size 1 and broadcast to ``x``'s shape;
    the result has ``x``'s shape and ``grad``'s dtype."""


def vector_norm(x, dims, p, keepdim):
    """The ``p``-norm of ``x`` over the dims in the tuple ``dims`` (non-negative; empty: every
    dim), as ``torch.linalg.vector_norm``: ``sum(|x|^p)^(1/p)`` for a float ``p > 0``
    (2: ``sqrt(sum(x^2))``, 1: ``sum(|x|)``), ``max|x|`` for ``inf``, ``min|x|`` for
    ``-inf``, the count of non-zeros for 0. In ``x``'s dtype, accumulated in float32
    (float64 for float64); NaN propagates.
    """


def vector_norm_bwd(grad, x, norm, dims, p):
    """The gradient of ``vector_norm`` (``grad`` and ``norm`` keep the reduced ``dims`` as size
    1), PyTorch's: ``p = 2``: ``grad * x / norm``; ``p = 1``: ``grad * sign(x)``; other
    ``p``: ``grad * sign(x) |x|^(p-1) / norm^(p-1)``, all 0 where ``norm`` is 0 (and for
    ``p < 1`` where ``x`` is 0); ``inf``/``-inf``: ``grad * sign(x)`` shared evenly among
    the elements whose ``|x|`` equals the norm (or is NaN); 0: zeros. ``sign(NaN)`` is 0,
    as PyTorch's. ``x``'s shape, ``grad``'s dtype.
    """


def mse_loss_fwd(x, y, reduction):
    """Squared error ``(x - y)^2`` of ``x`` and ``y`` (one float dtype, shapes broadcast
    together): per element in the broadcast shape (``"none"``), or its 0-d ``"sum"`` or
    ``"mean"`` (NaN for no elements) accumulated in float32 (float64 for float64) in a fixed
    order; in ``x``'s dtype."""


def mse_loss_bwd(grad, x, y, reduction, need_dx, need_dy):
    """``(dx, dy)`` of ``mse_loss_fwd`` in the broadcast shape, None where not needed: ``dx =
    2 (x - y) g`` and ``dy = -dx``, ``g`` the upstream ``grad`` (broadcast shape for
    ``"none"``, 0-d otherwise, divided by the element count for ``"mean"``); in ``x``'s
    dtype. The caller sums them back to the operands' shapes."""


# ----------------------------------------------------------------------------------------------
# embedding: rows of a table gathered at index tensors, their gradient, one-hot codes
# ----------------------------------------------------------------------------------------------


def embedding_fwd(idx, weight, check):
    """Rows of the 2-D table ``weight`` (num, dim) at the int32 or int64 indices ``idx`` (any
    shape, any strides): a new row-major buffer of ``idx.shape + (dim,)`` in ``weight``'s dtype.
    ``check`` (a ``RangeCheck`` for ``[0, num)``, or None when the indices are known to be
    in range) reports indices out of range; their rows are 0."""


def embedding_bwd(grad, idx, num, padding_idx):
    """The table's gradient of ``embedding_fwd``: a new row-major (num, dim) buffer in
    ``grad``'s dtype (``grad`` of shape ``idx.shape + (dim,)``, any strides).

    Row ``v`` is the sum of the rows of ``grad`` at the positions where ``idx == v``, added
    in row-major position order from 0 in float32 (float64 for float64) and rounded once:
    deterministic, and the same sums on every backend. Row ``padding_idx`` (an int in
    ``[0, num)``, or None) is 0; so is a row no index names.
    """


def one_hot(idx, num_classes, check):
    """int64 ``idx[..., None] == arange(num_classes)``: shape ``idx.shape + (num_classes,)``
    for the integer ``idx`` (any strides); ``check`` (a ``RangeCheck`` for ``[0,
    num_classes)``, or None when the values are known to be in range) reports values out
    of range (their rows are all 0)."""


# ----------------------------------------------------------------------------------------------
# optim: fused parameter updates, in place
# ----------------------------------------------------------------------------------------------


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening, nesterov, first_step):
    """One SGD update, PyTorch's rule, in place on ``param`` (and ``momentum_buf``); returns None.

    ``d = grad + weight_decay * param``; with momentum, ``buf = d`` on the
    first step, else ``momentum * buf + (1 - dampening) * d``, and ``d = d +
    momentum * buf`` (nesterov) or ``buf``; then ``param -= lr * d``.
    ``momentum_buf`` has ``param``'s shape and dtype, or is None when
    ``momentum`` is 0; hyper-parameters are Python floats and bools.
    """


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update (decoupled weight decay, PyTorch's rule), in place on ``param``
    and both moments; returns None.

    ``param *= 1 - lr * wd``; ``m = lerp(m, g, 1 - beta1)``; ``v = beta2 * v +
    (1 - beta2) * g^2``; ``param -= lr / (1 - beta1^step) * m / (sqrt(v) /
    sqrt(1 - beta2^step) + eps)``, ``step`` counting from 1.
    """


# -- flat storage: every parameter of one device and dtype in one buffer, one launch per step --
# A flat buffer holds parameters end to end (each segment starting at a multiple of
# ``flat_layout``'s alignment); the gradients and each optimizer state use the same layout.
# ``chunks`` (int64, (C, 2)) cuts the segments into ``[start, end)`` ranges of at most
# ``flat_layout``'s chunk size, each within one parameter; ``rows`` (int32, (C,)) gives each
# chunk its parameter group's row of ``hyper`` (float64, (R, len(columns))), or -1: skip the
# chunk this step (its parameter has no gradient); ``steps`` (int32, (C,)) counts each chunk's
# steps on the device, so a captured CUDA graph keeps counting. Values that change from step
# to step (the learning rate a scheduler sets, step counts, bias corrections) are read from
# these tables in device memory, never passed as kernel arguments.

SGD_COLUMNS = ("lr", "momentum", "weight_decay", "dampening", "one_minus_dampening",
               "nesterov", "maximize")
"""The columns of an ``sgd_flat_step`` hyper row (flags as 0.0 / 1.0)."""

ADAM_COLUMNS = ("lr", "beta1", "beta2", "eps", "weight_decay", "decay", "one_minus_beta1",
                "one_minus_beta2", "l2", "maximize", "bias1_at", "bias1_len", "bias2_at",
                "bias2_len", "log_beta1", "log_beta2")
"""The columns of an ``adam_flat_step`` hyper row: ``decay = 1 - lr * weight_decay`` (AdamW;
1.0 for Adam), ``l2`` Adam's L2 weight decay (0.0 for AdamW), ``bias*_at``/``bias*_len``
where the group's bias-correction tables start in ``bias`` and how long they are,
``log_beta*`` the natural logarithms of the betas (-inf for 0)."""


def flat_layout(dtype):
    """``(align, chunk)`` for flat storage of ``dtype``: each parameter's segment starts at a
    multiple of ``align`` elements, and is cut into chunks of at most ``chunk`` elements
    (a chunk is one program of the flat kernels)."""


def write_table(table, values):
    """Write the host ``numpy.ndarray`` ``values`` (``table``'s shape and dtype) into the
    buffer ``table`` in place, without waiting for the device (a non-blocking upload on a
    GPU, ordered before the kernels queued after it); returns None."""


def sgd_flat_step(param, grad, momentum_buf, chunks, rows, steps, hyper):
    """One ``sgd_step`` of every chunk whose row is >= 0, over the flat buffers ``param``,
    ``grad`` and ``momentum_buf`` (1-D, one float dtype; ``momentum_buf`` None when no row
    has momentum), with the hyper-parameters of its ``hyper`` row (``SGD_COLUMNS``); in
    place, returns None.

    The gradient is negated first when ``maximize``. With ``momentum != 0`` the chunk's
    buffer is set to ``d`` when its ``steps`` entry is 0, else updated, and the entry is
    incremented; without momentum the entry is left as it is. Each element's arithmetic is
    ``sgd_step``'s with the row's values as Python floats: the same bits.
    """


def adam_flat_step(param, grad, exp_avg, exp_avg_sq, chunks, rows, steps, hyper, bias):
    """One Adam/AdamW step of every chunk whose row is >= 0 over the flat buffers ``param``,
    ``grad``, ``exp_avg`` and ``exp_avg_sq`` (1-D, one float dtype), with the hyper-parameters
    of its ``hyper`` row (``ADAM_COLUMNS``); in place, returns None.

    The chunk's ``steps`` entry is incremented to ``t``. The gradient is negated when
    ``maximize``, then gets Adam's L2 term ``g + l2 * p`` (each of the two ops rounded to the
    parameter's dtype, as two elementwise ops would), then ``adamw_step`` runs with step ``t``
    and ``weight_decay`` (AdamW) or 0: the same bits. Its bias corrections ``1 - beta1^t`` and
    ``sqrt(1 - beta2^t)`` come from the float64 ``bias`` tables (entry ``at + t - 1`` for ``t
    <= len``, computed on the host with Python's ``**``); past a table's end they are
    computed on the device (``exp(t * log_beta)``; 1.0 once ``beta^t`` is below float64's
    resolution, where the tables stop).
    """


def grad_norm_partials(grad, chunks, select, norm_type, partials):
    """Partial results of the ``norm_type``-norm of the chunks of the flat gradient ``grad``
    whose ``select`` entry is >= 0; writes ``partials`` (1-D, float32, or float64 for float64
    norms: the accumulation dtype) in place, returns None.

    Entry ``i`` of ``partials`` (of length ``P``) covers the chunks ``i, i + P, i + 2P, ...``:
    the sum of ``|g|^norm_type`` over them (``|g|`` for 1, ``g * g`` for 2), or for
    ``math.inf`` their largest ``|g|`` (0 when none).
    """


def clip_grads_(grad, chunks, select, partials, norm_type, max_norm, total):
    """Scale the selected chunks of the flat gradient ``grad`` by ``min(1, max_norm / (norm +
    1e-6))``, ``norm`` the total ``norm_type``-norm that ``partials`` (all the partial
    results ``grad_norm_partials`` wrote, from every flat buffer of the clipping) add up to;
    in place, returns None.

    ``norm = (sum of partials)^(1/norm_type)`` (their max for ``math.inf``) in the partials'
    dtype, rounded to ``total``'s dtype; the coefficient is computed in ``total``'s dtype
    (each operation rounded to it), then rounded to ``grad``'s dtype and multiplied in.
    ``total`` (a 0-d buffer) receives ``norm``. ``chunks`` has at least one chunk.
    """


# ----------------------------------------------------------------------------------------------
# the op list, and checking a backend against it
# ----------------------------------------------------------------------------------------------

FAMILIES = {
    "memory": (from_numpy, to_numpy, dtype_of, empty, full, arange, cast, contiguous, reshape,
               view, permute, expand, getitem, setitem, copy_, accumulate_, index_add,
               exclusively_owned, overlapping, cat, stack),
    "random": (rand, randn, dropout, randint, randperm, multinomial),
    "elementwise": (unary, binary, where, relu_fwd, relu_bwd, unary_bwd),
    "reduction": (reduce, sum_to_shape, argmax, max_bwd),
    "matmul": (matmul, linear_fwd, linear_bwd),
    "softmax": (softmax_fwd, softmax_bwd, log_softmax_fwd, log_softmax_bwd,
                softmax_cross_entropy_fwd, softmax_cross_entropy_bwd,
                bce_with_logits_fwd, bce_with_logits_bwd,
                linear_cross_entropy_fwd, linear_cross_entropy_bwd,
                linear_cross_entropy_scale_),
    "norm": (layer_norm_fwd, layer_norm_bwd, var_mean, var_bwd, vector_norm, vector_norm_bwd,
             mse_loss_fwd, mse_loss_bwd),
    "embedding": (embedding_fwd, embedding_bwd, one_hot),
    "optim": (sgd_step, adamw_step, flat_layout, write_table, sgd_flat_step, adam_flat_step,
              grad_norm_partials, clip_grads_),
}
"""Each op family (one module per backend) and the functions it owns."""

OPS = tuple(fn.__name__ for fns in FAMILIES.values() for fn in fns)
"""The name of every backend function, family by family."""

FAMILY_NAMES = {family: tuple(fn.__name__ for fn in fns) for family, fns in FAMILIES.items()}


def _parameters(fn):
    """``fn``'s parameter list as comparable (name, kind, default) triples."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def problems(namespace, names=OPS):
    """What keeps ``namespace`` (a backend package or one family module) from the contract.

    ``names`` are the functions it must define (all of ``OPS`` for a package,
    ``FAMILY_NAMES[family]`` for a family module). Returns a list of sentences,
    empty when it conforms: each name missing, each parameter list that differs
    from the stub's, and each public function defined in ``namespace`` (or below
    it) that is not one of ``names`` (helpers are private, or live in a floor
    module).
    """
    stubs = globals()
    label = namespace.__name__
    out = []
    for name in names:
        fn = getattr(namespace, name, None)
        if fn is None:
            out.append(f"{label} lacks {name}")
        elif _parameters(fn) != _parameters(stubs[name]):
            out.append(f"{label}.{name}{inspect.signature(fn)} differs from the contract's "
                       f"{name}{inspect.signature(stubs[name])}")
    wanted = set(names)
    for name, obj in vars(namespace).items():
        if name.startswith("_") or name in wanted or not isinstance(obj, types.FunctionType):
            continue
        if obj.__module__ == label or obj.__module__.startswith(label + "."):
            out.append(f"{label}.{name} is public but not one of its contract functions")
    return out


def family_modules(namespace):
    """A backend package's op-family modules, in the contract's order, from its ``globals()``."""
    return tuple(namespace[family] for family in FAMILIES)


def table(*families):
    """``{name: function}`` for every contract op, each taken from the family module that
    owns it (a module named like a key of ``FAMILIES``): a backend package's namespace."""
    out, missing = {}, []
    for module in families:
        for name in FAMILY_NAMES[module.__name__.rsplit(".", 1)[-1]]:
            fn = getattr(module, name, None)
            if fn is None:
                missing.append(f"{module.__name__}.{name}")
            out[name] = fn
    missing += [name for name in OPS if name not in out]
    if missing:
        raise ImportError(f"the backend lacks contract functions: {', '.join(missing)}")
    return out
