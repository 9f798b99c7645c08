"""Bad input gets a clear tritonnn error, raised before any kernel runs.

Values only the device sees (class targets, index tensors) are the exception: the backend
checks them as it reads them (numpy before computing, a "cuda" kernel in its own launch),
and "cuda" raises at the next synchronization.

One row per wrong call: how to build its operands on a device, the call
itself, the error class it must raise and a regex its message must match (the
op's name and the offending shapes, dtypes or devices). Every row runs on
"cpu" and on "cuda" (the Triton interpreter without a GPU). While the bad call
runs, every math entry point of the device's backend is replaced by a spy, so
a row also fails if anything was computed before the check fired.
"""
import math
import re

import numpy as np
import pytest

import tritonnn as tn
from tritonnn.backends import backend

from conftest import skip_without_cuda

F = tn.nn.functional

# backend entry points that compute or write (views, allocation and host copies are allowed)
MATH_OPS = (
    "binary", "unary", "where", "matmul", "linear_fwd", "linear_bwd", "relu_fwd", "relu_bwd",
    "softmax_fwd", "softmax_bwd", "log_softmax_fwd", "log_softmax_bwd",
    "softmax_cross_entropy_fwd", "softmax_cross_entropy_bwd", "bce_with_logits_fwd",
    "bce_with_logits_bwd", "reduce", "argmax", "max_bwd", "cat", "stack", "cast", "copy_",
    "setitem", "index_add", "accumulate_", "sum_to_shape", "sgd_step", "adamw_step",
)


def S(*shape):
    """The regex for a shape as messages print it: S(2, 3) matches '(2, 3)'."""
    return re.escape(str(tuple(shape)))


def T(d, *shape, dtype=tn.float32, rg=False):
    return tn.ones(*shape, dtype=dtype, device=d, requires_grad=rg)


def I(d, values):  # noqa: E743  (an int64 index tensor)
    return tn.tensor(values, dtype=tn.int64, device=d)


def _freed_loss(d):
    w = T(d, 3, rg=True)
    loss = (w * w).sum()
    loss.backward()
    return loss


def _freed_intermediate(d):
    w = T(d, 3, rg=True)
    y = w * 2.0
    y.sum().backward()
    return (y * 3.0).sum().backward        # a new graph that leads into the freed one


def _grad_twice(d):
    w = T(d, 2, rg=True)
    loss = (w * w).sum()
    tn.grad(loss, [w])
    return lambda: tn.grad(loss, [w])


def _optim(d, cls, **hyper):
    params = _mlp(d).parameters()
    return lambda: cls(params, **hyper)


def _mlp(d):
    return tn.nn.Sequential(tn.nn.Linear(3, 4), tn.nn.ReLU(), tn.nn.Linear(4, 2)).to(d)


class _RaggedDataset(tn.data.Dataset):
    def __init__(self, d):
        self.d = d

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return tn.zeros(2 + (i % 2), device=self.d), i


# (id, build(device) -> zero-argument bad call, expected class, message regex)
CASES = [
    # -- matmul and linear --------------------------------------------------------------------
    ("matmul_inner", lambda d: lambda: T(d, 2, 3) @ T(d, 4, 5),
     tn.ShapeError, rf"matmul.*{S(2, 3)}.*{S(4, 5)}"),
    ("matmul_vec_inner", lambda d: lambda: T(d, 3) @ T(d, 4),
     tn.ShapeError, rf"matmul.*{S(3)}.*{S(4)}"),
    ("matmul_mat_vec_inner", lambda d: lambda: T(d, 2, 3) @ T(d, 2),
     tn.ShapeError, rf"matmul.*{S(2, 3)}.*{S(2)}"),
    ("matmul_rank0", lambda d: lambda: T(d) @ T(d, 3),
     tn.ShapeError, rf"matmul.*{S()}.*{S(3)}"),
    ("matmul_batch", lambda d: lambda: T(d, 2, 2, 3) @ T(d, 3, 3, 4),
     tn.ShapeError, rf"matmul.*{S(2, 2, 3)}.*{S(3, 3, 4)}"),
    ("matmul_not_tensor", lambda d: lambda: T(d, 2, 2).matmul(3),
     tn.TritonnnError, r"matmul.*int"),
    ("linear_inner", lambda d: lambda: F.linear(T(d, 2, 3), T(d, 4, 5)),
     tn.ShapeError, rf"linear.*{S(2, 3)}.*{S(4, 5)}"),
    ("linear_weight_1d", lambda d: lambda: F.linear(T(d, 2, 3), T(d, 3)),
     tn.ShapeError, rf"linear.*{S(2, 3)}.*{S(3)}"),
    ("linear_input_0d", lambda d: lambda: F.linear(T(d), T(d, 4, 3)),
     tn.ShapeError, rf"linear.*{S()}.*{S(4, 3)}"),
    ("linear_bias", lambda d: lambda: F.linear(T(d, 2, 3), T(d, 4, 3), T(d, 5)),
     tn.ShapeError, rf"linear.*bias {S(5)}.*{S(4, 3)}"),
    ("linear_module_features", lambda d: (lambda m: lambda: m(T(d, 2, 5)))(_mlp(d)),
     tn.ShapeError, rf"linear.*{S(2, 5)}.*{S(4, 3)}"),
    ("linear_relu_inner", lambda d: lambda: F.linear(T(d, 2, 3), T(d, 4, 2), activation="relu"),
     tn.ShapeError, rf"linear.*{S(2, 3)}.*{S(4, 2)}"),
    # -- broadcasting -------------------------------------------------------------------------
    ("add_broadcast", lambda d: lambda: T(d, 2, 3) + T(d, 4),
     tn.ShapeError, rf"\+.*{S(2, 3)}.*{S(4)}.*broadcast"),
    ("sub_broadcast", lambda d: lambda: T(d, 5) - T(d, 3),
     tn.ShapeError, rf"-.*{S(5)}.*{S(3)}.*broadcast"),
    ("mul_broadcast", lambda d: lambda: T(d, 2, 3) * T(d, 3, 2),
     tn.ShapeError, rf"\*.*{S(2, 3)}.*{S(3, 2)}.*broadcast"),
    ("div_broadcast", lambda d: lambda: T(d, 2, 3) / T(d, 2),
     tn.ShapeError, rf"/.*{S(2, 3)}.*{S(2)}.*broadcast"),
    ("eq_broadcast", lambda d: lambda: T(d, 2, 3) == T(d, 2),
     tn.ShapeError, rf"==.*{S(2, 3)}.*{S(2)}"),
    ("lt_broadcast", lambda d: lambda: T(d, 2, 3) < T(d, 4, 1, 2),
     tn.ShapeError, rf"<.*{S(2, 3)}.*{S(4, 1, 2)}"),
    ("add_string", lambda d: lambda: T(d, 2) + "a",
     tn.DTypeError, rf"\+.*str.*{S(2)}"),
    ("floordiv_broadcast", lambda d: lambda: T(d, 2, 3) // T(d, 2),
     tn.ShapeError, rf"//.*{S(2, 3)}.*{S(2)}.*broadcast"),
    ("mod_int_zero_divisor", lambda d: lambda: I(d, [7, 8]) % I(d, [1, 0]),
     tn.TritonnnError, r"%.*zero.*int64"),
    ("floordiv_int_zero_scalar", lambda d: lambda: 7 // I(d, [0, 2]),
     tn.TritonnnError, r"//.*zero.*int64"),
    ("pow_int_negative", lambda d: lambda: I(d, [2]) ** -2,
     tn.TritonnnError, r"\*\*.*negative.*-2"),
    ("sub_bools", lambda d: lambda: T(d, 2, dtype=tn.bool) - T(d, 2, dtype=tn.bool),
     tn.DTypeError, r"-.*two bool"),
    ("mod_bools", lambda d: lambda: T(d, 2, dtype=tn.bool) % True,
     tn.DTypeError, r"%.*bool"),
    ("add_int_out_of_range", lambda d: lambda: T(d, 2, dtype=tn.uint8) + 256,
     tn.DTypeError, r"\+.*256.*uint8"),
    # -- dtypes -------------------------------------------------------------------------------
    ("add_f32_f64", lambda d: lambda: T(d, 2) + T(d, 2, dtype=tn.float64),
     tn.DTypeError, r"\+.*float32.*float64"),
    ("matmul_f32_f64", lambda d: lambda: T(d, 2, 2) @ T(d, 2, 2, dtype=tn.float64),
     tn.DTypeError, r"matmul.*float32.*float64"),
    ("linear_f32_bf16", lambda d: lambda: F.linear(T(d, 2, 3), T(d, 4, 3, dtype=tn.bfloat16)),
     tn.DTypeError, r"linear.*float32.*bfloat16"),
    ("exp_int", lambda d: lambda: T(d, 2, dtype=tn.int64).exp(),
     tn.DTypeError, r"exp.*int64"),
    ("requires_grad_int", lambda d: lambda: tn.tensor([1, 2], device=d, requires_grad=True),
     tn.DTypeError, r"requires_grad.*int64"),
    ("requires_grad_bool", lambda d: lambda: tn.zeros(2, dtype=tn.bool, device=d).requires_grad_(),
     tn.DTypeError, r"requires_grad.*bool"),
    ("parameter_int", lambda d: lambda: tn.nn.Parameter(T(d, 2, dtype=tn.int32)),
     tn.DTypeError, r"requires_grad.*int32"),
    # -- views --------------------------------------------------------------------------------
    ("reshape_size", lambda d: lambda: T(d, 2, 3).reshape(4, 2),
     tn.ShapeError, rf"reshape.*{S(2, 3)}.*{S(4, 2)}"),
    ("reshape_two_minus_one", lambda d: lambda: T(d, 2, 3).reshape(-1, -1),
     tn.ShapeError, rf"reshape.*-1.*{S(-1, -1)}"),
    ("reshape_minus_one_uneven", lambda d: lambda: T(d, 2, 3).reshape(-1, 4),
     tn.ShapeError, rf"reshape.*{S(2, 3)}.*{S(-1, 4)}"),
    ("reshape_float_size", lambda d: lambda: T(d, 2, 3).reshape(2.5, 2),
     tn.ShapeError, rf"reshape.*2\.5.*{S(2, 3)}"),
    ("transpose_dim", lambda d: lambda: T(d, 2, 3).transpose(0, 2),
     tn.IndexOutOfRange, r"transpose.*dim 2.*2 dimension"),
    ("sum_dim", lambda d: lambda: T(d, 2, 3).sum(2),
     tn.IndexOutOfRange, r"sum.*dim 2.*\[-2, 1\]"),
    ("mean_dim_negative", lambda d: lambda: T(d, 2, 3).mean(-3),
     tn.IndexOutOfRange, r"mean.*dim -3.*\[-2, 1\]"),
    ("argmax_dim", lambda d: lambda: T(d, 2, 3).argmax(5),
     tn.IndexOutOfRange, r"argmax.*dim 5"),
    ("max_dim", lambda d: lambda: T(d, 2, 3).max(3),
     tn.IndexOutOfRange, r"max.*dim 3"),
    ("softmax_dim", lambda d: lambda: F.softmax(T(d, 2, 3), 2),
     tn.IndexOutOfRange, r"softmax.*dim 2"),
    ("log_softmax_dim", lambda d: lambda: F.log_softmax(T(d, 2, 3), -3),
     tn.IndexOutOfRange, r"log_softmax.*dim -3"),
    ("unsqueeze_dim", lambda d: lambda: T(d, 2, 3).unsqueeze(4),
     tn.IndexOutOfRange, r"unsqueeze.*dim 4.*\[-3, 2\]"),
    ("squeeze_dim", lambda d: lambda: T(d, 2, 3).squeeze(2),
     tn.IndexOutOfRange, r"squeeze.*dim 2"),
    ("cat_shapes", lambda d: lambda: tn.cat([T(d, 2, 3), T(d, 2, 4)], dim=0),
     tn.ShapeError, rf"cat.*{S(2, 3)}.*{S(2, 4)}"),
    ("stack_shapes", lambda d: lambda: tn.stack([T(d, 2), T(d, 3)]),
     tn.ShapeError, rf"stack.*{S(2)}.*{S(3)}"),
    # -- indexing -----------------------------------------------------------------------------
    ("index_row", lambda d: lambda: T(d, 2, 3)[2],
     tn.IndexOutOfRange, rf"index.*2.*dimension 0.*size 2.*{S(2, 3)}"),
    ("index_column", lambda d: lambda: T(d, 2, 3)[:, -4],
     tn.IndexOutOfRange, rf"index.*-4.*dimension 1.*size 3.*{S(2, 3)}"),
    ("index_too_many", lambda d: lambda: T(d, 2, 3)[0, 0, 0],
     tn.IndexOutOfRange, rf"index.*too many.*{S(2, 3)}"),
    ("index_tensor", lambda d: (lambda i: lambda: T(d, 2, 3)[i])(I(d, [0, 5])),
     tn.IndexOutOfRange, rf"index.*5.*dimension 0.*size 2.*{S(2, 3)}"),
    ("index_list", lambda d: lambda: T(d, 4)[[1, -5]],
     tn.IndexOutOfRange, rf"index.*-5.*size 4.*{S(4)}"),
    ("index_mask_shape", lambda d: (lambda m: lambda: T(d, 3, 2)[m])(T(d, 2, dtype=tn.bool)),
     tn.IndexOutOfRange, rf"index.*mask.*{S(2)}.*{S(3, 2)}"),
    ("index_float_tensor", lambda d: lambda: T(d, 3)[T(d, 1)],
     tn.DTypeError, r"index.*float32"),
    ("setitem_out_of_range", lambda d: lambda: T(d, 2, 3).__setitem__(5, 1.0),
     tn.IndexOutOfRange, rf"index.*5.*{S(2, 3)}"),
    ("setitem_broadcast", lambda d: lambda: T(d, 2, 3).__setitem__(0, T(d, 4)),
     tn.ShapeError, rf"setitem.*{S(4)}.*{S(3)}"),
    ("item_many", lambda d: lambda: T(d, 2).item(),
     tn.ShapeError, rf"item.*{S(2)}"),
    # -- losses -------------------------------------------------------------------------------
    ("ce_float_target", lambda d: lambda: F.cross_entropy(T(d, 2, 3), T(d, 2)),
     tn.DTypeError, r"cross_entropy.*target.*float32"),
    ("ce_target_too_big", lambda d: lambda: F.cross_entropy(T(d, 2, 3), I(d, [0, 3])),
     tn.IndexOutOfRange, r"cross_entropy.*target 3.*3 classes"),
    ("ce_target_negative", lambda d: lambda: F.cross_entropy(T(d, 2, 3), I(d, [-1, 0])),
     tn.IndexOutOfRange, r"cross_entropy.*target -1.*ignore_index=-100"),
    ("ce_other_ignore_index", lambda d: lambda: F.cross_entropy(T(d, 2, 3), I(d, [-100, 0]),
                                                                 ignore_index=-1),
     tn.IndexOutOfRange, r"cross_entropy.*target -100.*ignore_index=-1\b"),
    ("ce_batch_mismatch", lambda d: lambda: F.cross_entropy(T(d, 2, 3), I(d, [0, 1, 2])),
     tn.ShapeError, rf"cross_entropy.*{S(3)}.*{S(2, 3)}"),
    ("ce_target_2d", lambda d: lambda: F.cross_entropy(T(d, 2, 3), I(d, [[0], [1]])),
     tn.ShapeError, rf"cross_entropy.*{S(2, 1)}.*{S(2, 3)}"),
    ("ce_empty_batch", lambda d: lambda: F.cross_entropy(T(d, 0, 3), I(d, [])),
     tn.ShapeError, rf"cross_entropy.*empty.*{S(0, 3)}"),
    ("ce_logits_3d", lambda d: lambda: F.cross_entropy(T(d, 2, 3, 4), I(d, [0, 1])),
     tn.ShapeError, rf"cross_entropy.*2-D.*{S(2, 3, 4)}"),
    ("ce_reduction", lambda d: lambda: F.cross_entropy(T(d, 2, 3), I(d, [0, 1]), reduction="avg"),
     tn.TritonnnError, r"cross_entropy.*reduction.*'avg'"),
    ("bce_shapes", lambda d: lambda: F.binary_cross_entropy_with_logits(T(d, 2, 3), T(d, 3, 2)),
     tn.ShapeError, rf"binary_cross_entropy_with_logits.*{S(3, 2)}.*{S(2, 3)}"),
    ("bce_dtypes", lambda d: lambda: F.binary_cross_entropy_with_logits(
        T(d, 2), T(d, 2, dtype=tn.float64)),
     tn.DTypeError, r"binary_cross_entropy_with_logits.*float32.*float64"),
    # -- autograd -----------------------------------------------------------------------------
    ("backward_non_scalar", lambda d: (T(d, 2, rg=True) * 2.0).backward,
     tn.ShapeError, rf"backward.*scalar.*{S(2)}"),
    ("backward_twice", lambda d: _freed_loss(d).backward,
     tn.TritonnnError, r"backward.*'sum'.*retain_graph=True"),
    ("backward_through_freed", _freed_intermediate,
     tn.TritonnnError, r"backward.*'mul'.*already walked.*retain_graph=True"),
    ("grad_twice", _grad_twice,
     tn.TritonnnError, r"'sum'.*retain_graph=True"),
    ("backward_no_grad", lambda d: T(d, 2).sum().backward,
     tn.TritonnnError, rf"backward.*{S()}.*does not require grad"),
    ("backward_gradient_shape", lambda d: (lambda y, g: lambda: y.backward(g))(
        T(d, 2, rg=True) * 2.0, T(d, 3)),
     tn.ShapeError, rf"backward.*{S(3)}.*{S(2)}"),
    # -- modules, optimizers, data ------------------------------------------------------------
    ("load_state_dict_all_at_once", lambda d: (lambda m: lambda: m.load_state_dict({
        "0.weight": T(d, 4, 3), "0.bias": T(d, 5), "2.weight": T(d, 2, 4),
        "extra.weight": T(d, 1)}))(_mlp(d)),
     tn.ShapeError, rf"load_state_dict.*missing.*2\.bias.*unexpected.*extra\.weight"
                    rf".*0\.bias.*{S(5)}.*{S(4)}"),
    ("sgd_no_params", lambda d: lambda: tn.optim.SGD(tn.nn.Sequential().parameters(), lr=0.1),
     tn.TritonnnError, r"SGD.*empty parameter list"),
    ("sgd_negative_lr", lambda d: _optim(d, tn.optim.SGD, lr=-0.1),
     tn.TritonnnError, r"SGD.*learning rate -0\.1"),
    ("sgd_lr_string", lambda d: _optim(d, tn.optim.SGD, lr="fast"),
     tn.TritonnnError, r"SGD.*learning rate.*'fast'"),
    ("adamw_no_params", lambda d: lambda: tn.optim.AdamW([]),
     tn.TritonnnError, r"AdamW.*empty parameter list"),
    ("adamw_beta1_one", lambda d: _optim(d, tn.optim.AdamW, betas=(1.0, 0.9)),
     tn.TritonnnError, r"AdamW.*beta1 1\.0"),
    ("adamw_beta2_negative", lambda d: _optim(d, tn.optim.AdamW, betas=(0.9, -0.1)),
     tn.TritonnnError, r"AdamW.*beta2 -0\.1"),
    ("adamw_negative_lr", lambda d: _optim(d, tn.optim.AdamW, lr=-1e-3),
     tn.TritonnnError, r"AdamW.*learning rate -0\.001"),
    ("dataloader_batch_zero", lambda d: lambda: tn.data.DataLoader(
        tn.data.TensorDataset(T(d, 4, 2)), batch_size=0),
     tn.TritonnnError, r"DataLoader.*batch_size.*0"),
    ("dataset_item_shapes", lambda d: lambda: list(tn.data.DataLoader(_RaggedDataset(d),
                                                                       batch_size=2)),
     tn.ShapeError, rf"DataLoader.*item\[0\].*{S(2)}.*{S(3)}"),
    ("tensor_dataset_lengths", lambda d: lambda: tn.data.TensorDataset(T(d, 3, 2), T(d, 4)),
     tn.ShapeError, rf"TensorDataset.*{S(3, 2)}.*{S(4)}"),
    # -- factories ----------------------------------------------------------------------------
    ("tensor_ragged", lambda d: lambda: tn.tensor([[1.0, 2.0], [3.0]], device=d),
     tn.ShapeError, r"tensor.*rectangular"),
    ("tensor_ragged_deep", lambda d: lambda: tn.tensor([[[1], [2]], [[3], [4, 5]]], device=d),
     tn.ShapeError, r"tensor.*rectangular"),
    ("tensor_strings", lambda d: lambda: tn.tensor(["a", "b"], device=d),
     tn.DTypeError, r"tensor.*unsupported"),
    ("unknown_device", lambda d: lambda: tn.zeros(2, device="tpu"),
     tn.DeviceError, r"device.*'tpu'"),
    ("malformed_device", lambda d: lambda: tn.zeros(2, device="cuda:x"),
     tn.DeviceError, r"device.*'cuda:x'"),
    ("unknown_dtype_name", lambda d: lambda: tn.zeros(2, dtype="float8", device=d),
     tn.DTypeError, r"dtype.*'float8'"),
    ("unknown_numpy_dtype", lambda d: lambda: tn.tensor(np.zeros(2, np.complex64), device=d),
     tn.DTypeError, r"complex64"),
    ("negative_size", lambda d: lambda: tn.zeros(-1, 2, device=d),
     tn.ShapeError, rf"zeros.*{S(-1, 2)}"),
    ("randn_int", lambda d: lambda: tn.randn(2, dtype=tn.int64, device=d),
     tn.DTypeError, r"randn.*int64"),
]


@pytest.fixture
def no_math(monkeypatch):
    """Make every backend math entry point record its name instead of running."""
    def install(dev):
        calls = []
        B = backend(tn.device(dev))

        def spy(name):
            def f(*a, **k):
                calls.append(name)
                raise AssertionError(f"{name} ran before the error was raised")
            return f
        for name in MATH_OPS:
            if hasattr(B, name):
                monkeypatch.setattr(B, name, spy(name))
        return calls
    return install


# values only the device sees (class targets, index tensors): the backend checks them as it
# reads them, numpy before computing anything, the "cuda" kernels in the launch itself, raised
# at the next synchronization (or at the op with tn.cuda.set_sync_checks(True))
CHECKED_BY_THE_BACKEND = {"index_tensor", "ce_target_too_big", "ce_target_negative",
                          "ce_other_ignore_index"}


def _raises_clear_error(bad_call, exc, pattern):
    with pytest.raises(Exception) as info:
        bad_call()
    e = info.value
    assert isinstance(e, tn.TritonnnError), f"bare {type(e).__module__}.{type(e).__name__}: {e}"
    assert isinstance(e, exc), f"expected {exc.__name__}, got {type(e).__name__}: {e}"
    assert re.search(pattern, str(e), re.S), f"message {str(e)!r} does not match {pattern!r}"


@pytest.mark.parametrize("build, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_call_raises_clear_error(request, device, no_math, build, exc, pattern):
    if request.node.callspec.id.split("-", 1)[1] in CHECKED_BY_THE_BACKEND:
        pytest.skip("checked by the backend: test_device_checked_values_raise_at_the_next_sync")
    bad_call = build(device)
    calls = no_math(device)
    _raises_clear_error(bad_call, exc, pattern)
    assert calls == [], f"backend ran {calls} before raising"


DEVICE_CHECKED = [c for c in CASES if c[0] in CHECKED_BY_THE_BACKEND]


@pytest.mark.parametrize("build, exc, pattern", [c[1:] for c in DEVICE_CHECKED],
                         ids=[c[0] for c in DEVICE_CHECKED])
def test_device_checked_values_raise_at_the_next_sync(device, build, exc, pattern):
    bad_call = build(device)
    if device == "cpu":                             # numpy reads the values: raised at the op
        _raises_clear_error(bad_call, exc, pattern)
        return
    tn.cuda.reset_stats()
    bad_call()                                      # queued; the op waits for nothing
    assert tn.cuda.stats()["host_syncs"] == 0
    _raises_clear_error(tn.cuda.synchronize, exc, pattern)
    tn.cuda.synchronize()                           # reported once
    tn.cuda.set_sync_checks(True)
    try:
        _raises_clear_error(bad_call, exc, pattern)     # debugging: raised by the op itself
    finally:
        tn.cuda.set_sync_checks(False)


def test_case_table_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 45 and len(set(ids)) == len(ids)


def test_error_classes_are_python_builtins_too():
    # code that catches the standard classes keeps working, as with PyTorch's errors
    assert issubclass(tn.ShapeError, ValueError) and issubclass(tn.DTypeError, TypeError)
    assert issubclass(tn.DeviceError, RuntimeError) and issubclass(tn.IndexOutOfRange, IndexError)


def test_failed_load_state_dict_changes_nothing(device):
    m = _mlp(device)
    before = {n: p.detach().numpy().copy() for n, p in m.named_parameters()}
    bad = {n: tn.full(p.shape, 7.0, device=device) for n, p in m.named_parameters()}
    bad["2.bias"] = tn.zeros(3, device=device)               # one mis-shaped entry
    with pytest.raises(tn.ShapeError, match=r"2\.bias.*\(3,\).*\(2,\)"):
        m.load_state_dict(bad)
    for n, p in m.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), before[n])


def test_failed_index_assignment_changes_nothing(device):
    x = tn.arange(6, device=device).reshape(2, 3)
    if device == "cpu":
        with pytest.raises(tn.IndexOutOfRange):
            x[tn.tensor([0, 9], device=device)] = 0
        np.testing.assert_array_equal(x.numpy(), np.arange(6).reshape(2, 3))
        return
    # "cuda" checks the index in the kernel: the error comes at the next read, the rows in
    # range are written and nothing outside the tensor is
    x[tn.tensor([0, 9], device=device)] = 0
    with pytest.raises(tn.IndexOutOfRange, match=r"index 9 .*dimension 0 with size 2"):
        x.numpy()
    np.testing.assert_array_equal(x.numpy(), [[0, 0, 0], [3, 4, 5]])
    # a list index is known on the host: refused before anything is written, on every device
    with pytest.raises(tn.IndexOutOfRange, match=r"index 9"):
        x[[1, 9]] = 7
    np.testing.assert_array_equal(x.numpy(), [[0, 0, 0], [3, 4, 5]])


def test_eq_with_other_types_is_not_an_error(device):
    # as torch: comparing with None (or a string) is identity, not an error
    x = T(device, 2)
    assert (x == None) is False  # noqa: E711
    assert (x != "a") is True


def test_nan_and_inf_are_values_not_errors(device):
    vals = [1.0, math.nan, math.inf, -math.inf]
    for dt in (tn.float32, tn.float64, tn.float16, tn.bfloat16):
        t = tn.tensor(vals, dtype=dt, device=device)
        got = np.asarray(t.tolist(), dtype=np.float64)
        assert got[0] == 1.0 and np.isnan(got[1]) and got[2] == math.inf and got[3] == -math.inf
    t = tn.tensor(np.array(vals, np.float32), device=device)
    s = (t * 2.0).numpy()
    assert s[0] == 2.0 and np.isnan(s[1]) and s[2] == math.inf and s[3] == -math.inf
    assert math.isnan(t.sum().item())


# (id, build(cpu factory, cuda factory) -> zero-argument bad call, message regex)
MIXED = [
    ("add", lambda c, g: lambda: c(2) + g(2), r"\+.*\(2,\) on cpu.*\(2,\) on cuda"),
    ("compare", lambda c, g: lambda: c(2) < g(2), r"<.*cpu.*cuda"),
    ("matmul", lambda c, g: lambda: c(2, 3) @ g(3, 2),
     r"matmul.*\(2, 3\) on cpu.*\(3, 2\) on cuda"),
    ("linear", lambda c, g: lambda: F.linear(g(2, 3), c(4, 3)), r"linear.*\(2, 3\) on cuda.*cpu"),
    ("cross_entropy", lambda c, g: lambda: F.cross_entropy(
        c(2, 3), tn.zeros(2, dtype=tn.int64, device="cuda")), r"cross_entropy.*cpu.*cuda"),
    ("cat", lambda c, g: lambda: tn.cat([c(2), g(2)]), r"cat.*cpu.*cuda"),
    ("where", lambda c, g: (lambda mask: lambda: tn.where(mask, c(2), g(2)))(c(2) > 0),
     r"where.*cpu.*cuda"),
    ("index", lambda c, g: lambda: c(3)[tn.tensor([0], device="cuda")], r"index.*cuda.*cpu"),
    ("backward_gradient", lambda c, g: (lambda y, up: lambda: y.backward(up))(
        c(2).requires_grad_() * 2.0, g(2)), r"backward.*cuda.*cpu"),
]


@pytest.mark.parametrize("build, pattern", [m[1:] for m in MIXED], ids=[m[0] for m in MIXED])
def test_mixing_devices_is_a_device_error(no_math, build, pattern):
    skip_without_cuda()

    def cpu(*s):
        return tn.ones(*s)

    def gpu(*s):
        return tn.ones(*s, device="cuda")
    bad_call = build(cpu, gpu)
    calls = (no_math("cpu"), no_math("cuda"))
    with pytest.raises(tn.DeviceError) as info:
        bad_call()
    assert re.search(pattern, str(info.value), re.S), str(info.value)
    assert calls == ([], [])


def _torch_freed_backward(torch):
    w = torch.ones(3, requires_grad=True)
    loss = (w * w).sum()
    loss.backward()
    loss.backward()


# the same wrong calls in PyTorch: each row of the table above mirrors a call PyTorch refuses
TORCH_REFUSES = {
    "matmul_inner": lambda torch: torch.ones(2, 3) @ torch.ones(4, 5),
    "matmul_vec_inner": lambda torch: torch.ones(3) @ torch.ones(4),
    "matmul_batch": lambda torch: torch.ones(2, 2, 3) @ torch.ones(3, 3, 4),
    "linear_inner": lambda torch: torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 5)),
    "add_broadcast": lambda torch: torch.ones(2, 3) + torch.ones(4),
    "eq_broadcast": lambda torch: torch.ones(2, 3) == torch.ones(2),
    "add_string": lambda torch: torch.ones(2) + "a",
    "reshape_size": lambda torch: torch.ones(2, 3).reshape(4, 2),
    "reshape_two_minus_one": lambda torch: torch.ones(2, 3).reshape(-1, -1),
    "reshape_float_size": lambda torch: torch.ones(2, 3).reshape(2.5, 2),
    "transpose_dim": lambda torch: torch.ones(2, 3).transpose(0, 2),
    "sum_dim": lambda torch: torch.ones(2, 3).sum(2),
    "softmax_dim": lambda torch: torch.softmax(torch.ones(2, 3), 2),
    "unsqueeze_dim": lambda torch: torch.ones(2, 3).unsqueeze(4),
    "index_row": lambda torch: torch.ones(2, 3)[2],
    "index_tensor": lambda torch: torch.ones(2, 3)[torch.tensor([0, 5])],
    "index_mask_shape": lambda torch: torch.ones(3, 2)[torch.ones(2, dtype=torch.bool)],
    "ce_float_target": lambda torch: torch.nn.functional.cross_entropy(
        torch.ones(2, 3), torch.ones(2)),
    "ce_target_too_big": lambda torch: torch.nn.functional.cross_entropy(
        torch.ones(2, 3), torch.tensor([0, 3])),
    "ce_batch_mismatch": lambda torch: torch.nn.functional.cross_entropy(
        torch.ones(2, 3), torch.tensor([0, 1, 2])),
    "requires_grad_int": lambda torch: torch.tensor([1, 2], requires_grad=True),
    "backward_non_scalar": lambda torch: (torch.ones(2, requires_grad=True) * 2).backward(),
    "backward_twice": _torch_freed_backward,
    "backward_no_grad": lambda torch: torch.ones(2).sum().backward(),
    "sgd_negative_lr": lambda torch: torch.optim.SGD([torch.ones(2, requires_grad=True)], lr=-0.1),
    "adamw_beta1_one": lambda torch: torch.optim.AdamW([torch.ones(2, requires_grad=True)],
                                                       betas=(1.0, 0.9)),
    "adamw_no_params": lambda torch: torch.optim.AdamW([]),
    "tensor_ragged": lambda torch: torch.tensor([[1.0, 2.0], [3.0]]),
    "unknown_device": lambda torch: torch.zeros(2, device="tpu"),
}


@pytest.mark.parametrize("case", sorted(TORCH_REFUSES))
def test_pytorch_refuses_the_same_call(case):
    torch = pytest.importorskip("torch")
    assert case in {c[0] for c in CASES}
    with pytest.raises(Exception):
        TORCH_REFUSES[case](torch)
