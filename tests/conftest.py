"""Shared test setup.

Without a real GPU, device "cuda" runs the Triton kernels through Triton's
interpreter (TRITONNN_INTERPRET=1, set here before tritonnn or triton is
imported). On a GPU machine the tests run the compiled kernels instead.
"""
import functools
import importlib.util
import os
import re
import shutil
import tempfile

if "TRITONNN_INTERPRET" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["TRITONNN_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tritonnn as tn  # noqa: E402

DEVICES = ["cpu", "cuda"]


@functools.cache
def why_no_cuda() -> str | None:
    """Why device "cuda" cannot run here, or None when it can (a GPU, or Triton's interpreter).

    Asked once per session: every test that needs "cuda" comes here (``cuda_usable``,
    ``skip_without_cuda``, the ``device`` fixture). Only tritonnn's ``DeviceError`` means "not
    here"; any other exception (a kernel module that fails to import, say) is a bug and is raised.
    """
    try:
        tn.zeros(1, device="cuda").numpy()
    except tn.DeviceError as e:
        return str(e)
    return None


def cuda_usable() -> bool:
    return why_no_cuda() is None


def skip_without_cuda():
    """Skip the calling test when device "cuda" cannot run here, saying why."""
    if not cuda_usable():
        pytest.skip(f"device cuda not usable: {why_no_cuda()}")


def gpu_present() -> bool:
    """True when "cuda" is a real GPU (not Triton's interpreter)."""
    return os.environ.get("TRITONNN_INTERPRET") != "1" and cuda_usable() and tn.cuda.is_available()


def skip_without_gpu():
    """Skip the calling test unless a real GPU runs the kernels (CUDA graphs, timings)."""
    if not gpu_present():
        pytest.skip("needs a real GPU (Triton's interpreter has no CUDA graphs)")


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test on every device: "cpu" (numpy) and "cuda" (Triton, interpreted without a GPU)."""
    if request.param == "cuda":
        skip_without_cuda()
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _no_device_error_left_pending():
    """A test that makes a kernel record a bad target or index (raised at the next sync on
    "cuda") must see that error itself: one left pending would surface in a later test."""
    yield
    try:
        tn.cuda.synchronize()           # nothing (no count, no torch) unless "cuda" was used
    except tn.IndexOutOfRange as e:
        pytest.fail(f"the test left a device-side error pending: {e}")


# ----------------------------------------------------------------------------------------------
# the `gpu` marker: the subset worth real-GPU time (`pytest -m gpu`, run by perf/gpu_check.sh)
# ----------------------------------------------------------------------------------------------
# Every kernel family once per dtype, the fused cross-entropy and linear paths,
# linear_cross_entropy, the training flows and the counters; tests of CUDA graphs carry
# @pytest.mark.gpu themselves. Sized for a cold Triton cache: each entry costs its kernels'
# first compiles (~0.2 s a plain specialization, ~0.7 s a GEMM tile on triton 3.6). Entries
# are test names within a file, with their parameters; "*" matches anything. A test
# parametrized by the `device` fixture is marked on "cuda" only. An entry that matches no
# test of a collected file is listed in GPU_SUBSET_STALE, and test_graphs.py's
# test_gpu_subset_names_exist fails: a renamed test cannot drop out silently.
GPU_SUBSET = {
    "test_kernels_parity.py": [
        # elementwise: one unary op, one binary op per dtype; where/relu/accumulate; int mod
        "test_unary[exp-contiguous-float32]", "test_unary[tanh-transposed-bfloat16]",
        "test_unary[sigmoid-sliced-float16]",
        "test_binary_broadcast_strided[add-float32]", "test_binary_broadcast_strided[mul-bfloat16]",
        "test_binary_broadcast_strided[div-float16]",
        "test_binary_scalar[mul-0.1-float32]",
        "test_binary_floor_divmod_integers[mod-contiguous-int64]",
        "test_where_relu_accumulate[*]",
        # reduction
        "test_reduce[sum-dims1-True-float32]", "test_reduce[mean-dims2-False-bfloat16]",
        "test_reduce[max-dims0-False-float16]",
        "test_argmax[None-False-float32]", "test_sum_to_shape[shape0-to0-bfloat16]",
        "test_max_bwd[0-False-float32]",
        # softmax, cross-entropy (fused), bce
        "test_softmax_family[softmax-1-float32]", "test_softmax_family[log_softmax--1-bfloat16]",
        "test_softmax_family[softmax-0-float16]",
        "test_cross_entropy[inplace-0.1-mean-*]", "test_cross_entropy[fresh-0.0-none-float32]",
        "test_cross_entropy_strided_logits[transposed]",
        "test_cross_entropy_big_vocabulary[bfloat16-128256-3]",
        "test_bce_with_logits[mean-float32]",
        # optimizers
        "test_sgd_step[0.9-0.0-False-0.01-0.05-*]", "test_adamw_step[0.01-*]",
        # memory and random
        "test_full_arange_and_cast[float32]", "test_full_arange_and_cast[bfloat16]",
        "test_full_arange_and_cast[int64]",
        "test_contiguous_and_copy[transposed]", "test_cat_and_stack[float16]",
        "test_getitem_setitem_index_add[array]",
        "test_rand_randn_bit_identical[3-4-*]",
        # whole flows: the Tensor API and a training loop, cuda against cpu
        "test_tensor_api_cuda_matches_cpu", "test_training_flow_cuda_matches_cpu[*]",
    ],
    "test_kernels_matmul.py": [
        "test_matmul_2d[float32-129-65-3]", "test_matmul_2d[bfloat16-3-17-5]",
        "test_matmul_2d[float16-129-65-3]", "test_matmul_2d[float64-3-17-5]",
        "test_matmul_batched_broadcast[bfloat16-(2, 1, 3, 17, 9)-(4, 1, 9, 33)]",
        "test_linear_fwd[float32-129-33-17-True-True]",
        "test_linear_bwd[float32-129-33-17-True-xwb]",
        "test_linear_fwd_mlp_layer[*]", "test_linear_bwd_mlp_layer[*]", "test_linear_tf32_allowed",
        "test_functional_linear_cuda_matches_cpu_and_torch[float32-relu-True]",
        "test_functional_linear_cuda_matches_cpu_and_torch[bfloat16-relu-True]",
    ],
    "test_kernels_parity_norm.py": [
        "test_layer_norm[(3, 17)-True-*]", "test_var_mean[(17, 129)-(1,)-float32]",
        "test_vector_norm[(17, 129)-(1,)-2.0]", "test_mse_loss[(17, 129)-(17, 129)-mean-bfloat16]",
        "test_activation[gelu-contiguous-*]", "test_unary_bwd[sqrt-contiguous-float16]",
    ],
    "test_kernels_parity_embed.py": [
        "test_embedding_fwd[ishape0-contiguous-idtype0-contiguous-*]",
        "test_embedding_bwd[None-contiguous-float32]", "test_one_hot[13-shape2-contiguous-int64]",
        "test_dropout[0.3-contiguous-bfloat16]", "test_randint[shape0-0-0-10]", "test_randperm[17]",
        "test_multinomial[3-17-5-True-contiguous-float32]",
    ],
    "test_linear_cross_entropy.py": [
        "test_kernels_match_numpy_mirror[mean-float32]",
        "test_kernels_match_numpy_mirror[mean-bfloat16]",
        "test_low_precision[cuda-mean-bfloat16]",
        "test_matches_torch_in_chunks[cuda-mean-0.1-bias]",
        "test_vocabulary_50257_on_cuda",
    ],
    "test_cuda_stats.py": ["*"],
}


def _subset_pattern(entry):
    return re.compile(".*".join(re.escape(part) for part in entry.split("*")) + r"\Z")


GPU_SUBSET_STALE = []          # filled when the whole suite is collected, then ends in "checked"
_GPU_SUBSET = {f: [(e, _subset_pattern(e)) for e in entries] for f, entries in GPU_SUBSET.items()}


def pytest_collection_modifyitems(config, items):
    """Mark the GPU_SUBSET tests `gpu` (on "cuda" only for device-parametrized tests)."""
    collected, matched = set(), set()
    for item in items:
        file = item.path.name
        collected.add(file)
        name = item.nodeid.partition("::")[2]
        for entry, pattern in _GPU_SUBSET.get(file, ()):
            if pattern.match(name):
                matched.add((file, entry))
                params = getattr(getattr(item, "callspec", None), "params", {})
                if params.get("device", "cuda") == "cuda":
                    item.add_marker(pytest.mark.gpu)
    if _whole_suite(config):
        GPU_SUBSET_STALE[:] = [f"{file}::{entry}" for file in sorted(collected & set(GPU_SUBSET))
                               for entry in GPU_SUBSET[file] if (file, entry) not in matched]
        GPU_SUBSET_STALE.append("checked")
    items.sort(key=lambda item: item.path.name == AOT_FILE)       # the AOT build's tests last


def _whole_suite(config) -> bool:
    """True when whole folders were collected, nothing left out (the check of GPU_SUBSET's
    names runs then: a run of one file or one test collects only part of a file)."""
    if config.getoption("deselect", None) or config.getoption("lf", False) or \
            config.getoption("ignore", None):
        return False
    return all(os.path.isdir(str(arg)) for arg in config.args)


# ----------------------------------------------------------------------------------------------
# the AOT build beside the other tests
# ----------------------------------------------------------------------------------------------
# test_aot_compile.py's build (every kernel for sm_80 and sm_90, minutes of CPU in worker
# processes) starts as soon as the session's tests are collected, at the lowest scheduling
# priority, on the core the tests leave idle (they mostly run in one process); its tests run
# last and wait only for what is left of it.
AOT_FILE = "test_aot_compile.py"
_AOT = {}


def pytest_collection_finish(session):
    if session.config.option.collectonly or importlib.util.find_spec("triton") is None:
        return
    if any(item.path.name == AOT_FILE for item in session.items):
        import aot_helpers
        _AOT["work"] = tempfile.mkdtemp(prefix="tritonnn-aot-")
        _AOT["build"] = aot_helpers.Build(_AOT["work"], idle=True)


def aot_build():
    """The session's background AOT build (``aot_helpers.Build``), or None."""
    return _AOT.get("build")


def pytest_sessionfinish(session):
    build = _AOT.pop("build", None)
    if build is not None:
        build.stop()
        shutil.rmtree(_AOT.pop("work"), ignore_errors=True)
