"""Module extras (issue 11): traversal, apply, requires_grad_, buffers, placement and dtype
helpers, ModuleList, Flatten, Identity; names, order and state_dict keys against torch.nn."""
import numpy as np
import pytest
import torch

import tritonnn as tn
from conftest import skip_without_cuda


def _int_zeros(m):
    return m.zeros((), dtype=m.int64)


def build(m):
    """The same architecture in tritonnn (``m = tn``) or torch: nested modules, a ModuleList
    of blocks with persistent, non-persistent and integer buffers, a shared sub-module."""
    class Block(m.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = m.nn.Linear(3, 4)
            self.register_buffer("running", m.zeros(4))
            self.register_buffer("count", _int_zeros(m))
            self.register_buffer("mask", m.ones(4), persistent=False)
            self.scale = m.nn.Parameter(m.ones(4))

        def forward(self, x):
            return self.lin(x) * self.scale + self.running

    class Net(m.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("step", m.zeros(1))
            self.blocks = m.nn.ModuleList([Block(), Block()])
            self.head = m.nn.Sequential(m.nn.Flatten(), m.nn.Linear(4, 2), m.nn.Identity())
            self.w = m.nn.Parameter(m.ones(2))
            self.shared = self.head                      # reachable twice

        def forward(self, x):
            for b in self.blocks:
                x = b(x[:, :3] if x.shape[1] > 3 else x)
            return self.head(x) * self.w
    return Net()


def test_names_and_order_match_torch():
    ours, theirs = build(tn), build(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for method in ("named_parameters", "named_buffers", "named_modules", "named_children"):
        assert [n for n, _ in getattr(ours, method)()] == \
            [n for n, _ in getattr(theirs, method)()], method
    assert len(ours.parameters()) == len(list(theirs.parameters()))
    assert len(ours.buffers()) == len(list(theirs.buffers())) == 7
    assert len(list(ours.modules())) == len(list(theirs.modules()))
    assert len(list(ours.children())) == len(list(theirs.children())) == 2
    assert [n for n, _ in ours.named_parameters(recurse=False)] == ["w"]
    assert [n for n, _ in ours.named_buffers(prefix="net")][:2] == ["net.step",
                                                                     "net.blocks.0.running"]
    assert repr(ours) == repr(theirs)                    # "(0-1): 2 x Block(...)" included


def test_state_dict_holds_persistent_buffers_and_loads_them():
    ours = build(tn)
    sd = ours.state_dict()
    assert "blocks.0.mask" not in sd and "blocks.0.running" in sd
    assert sd["blocks.1.count"].dtype is tn.int64
    assert "shared.1.weight" in sd and "head.1.weight" in sd       # both names, as torch
    assert all(id(b) not in {id(p) for p in ours.parameters()} for b in ours.buffers())
    # torch's values load into ours, buffers included; ours into torch
    theirs = build(torch)
    with torch.no_grad():
        for k, v in theirs.state_dict().items():
            v.copy_(torch.arange(v.numel()).reshape(v.shape).to(v.dtype) + 1)
    missing, unexpected = ours.load_state_dict({k: v.numpy() for k, v in
                                                theirs.state_dict().items()})
    assert missing == [] and unexpected == []
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), theirs.state_dict()[k].numpy(), err_msg=k)
    assert ours.blocks[1].count.dtype is tn.int64 and ours.blocks[1].count.item() == 1
    back = build(torch)
    back.load_state_dict({k: torch.from_numpy(v.numpy().copy())
                          for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(tn.tensor(x)).detach().numpy(),
                               back(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-4)


def test_strict_load_covers_buffers():
    ours = build(tn)
    sd = dict(ours.state_dict())
    del sd["blocks.0.running"]
    sd["blocks.0.mask"] = tn.ones(4)                      # not persistent: not expected
    sd["step"] = tn.zeros(3)
    with pytest.raises(tn.ShapeError) as e:
        ours.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys: blocks.0.running" in msg and "unexpected keys: blocks.0.mask" in msg
    assert "step: checkpoint (3,) vs model (1,)" in msg
    sd["step"] = tn.full((1,), 7.0)
    missing, unexpected = ours.load_state_dict(sd, strict=False)
    assert missing == ["blocks.0.running"] and unexpected == ["blocks.0.mask"]
    assert ours.step.tolist() == [7.0]


def test_register_buffer_rules():
    m = tn.nn.Linear(2, 2)
    m.register_buffer("avg", tn.zeros(2))
    assert m.avg.tolist() == [0.0, 0.0] and "avg" in m.state_dict()
    m.avg = tn.ones(2)                                    # assignment keeps it a buffer
    assert m.state_dict()["avg"].tolist() == [1.0, 1.0] and len(m.parameters()) == 2
    m.register_buffer("empty", None)                      # None: registered, not in state_dict
    assert "empty" not in m.state_dict() and m.empty is None
    del m.avg
    assert "avg" not in m.state_dict()
    with pytest.raises(AttributeError):
        m.avg
    with pytest.raises(tn.TritonnnError, match=r"Linear.register_buffer: attribute 'weight' "
                                               r"already exists"):
        m.register_buffer("weight", tn.zeros(2))
    with pytest.raises(tn.TritonnnError, match=r"the name must be non-empty and have no '\.', "
                                               r"got 'a\.b'"):
        m.register_buffer("a.b", tn.zeros(2))
    with pytest.raises(tn.DTypeError, match=r"register_buffer: 'x' must be a tensor or None, "
                                            r"got list"):
        m.register_buffer("x", [1.0])
    m.register_buffer("x", tn.zeros(1))
    with pytest.raises(tn.DTypeError, match=r"Linear: buffer 'x' takes a tensor or None, got str"):
        m.x = "zero"


def test_register_parameter_and_add_module():
    m = tn.nn.Module()
    m.register_parameter("w", tn.nn.Parameter(tn.ones(2)))
    m.add_module("sub", tn.nn.Linear(2, 1))
    assert [n for n, _ in m.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    with pytest.raises(tn.DTypeError, match="register_parameter: 'v' must be a tn.nn.Parameter"):
        m.register_parameter("v", tn.ones(2))
    with pytest.raises(tn.DTypeError, match="add_module: 'other' must be a Module, got int"):
        m.add_module("other", 3)


def test_apply_visits_children_first_then_self():
    net = build(tn)
    order = []
    assert net.apply(lambda mod: order.append(type(mod).__name__)) is net
    t_order = []
    build(torch).apply(lambda mod: t_order.append(type(mod).__name__))
    assert order == t_order and order[-1] == "Net"

    def init(mod):
        if isinstance(mod, tn.nn.Linear):
            tn.nn.init.zeros_(mod.weight)
    net.apply(init)
    assert all(float(abs(b.lin.weight).sum().item()) == 0.0 for b in net.blocks)
    with pytest.raises(tn.DTypeError, match="Net.apply: fn must be callable"):
        net.apply("zeros")


def test_requires_grad_freezes_and_unfreezes():
    net = build(tn)
    assert net.blocks[0].requires_grad_(False) is net.blocks[0]
    assert not any(p.requires_grad for p in net.blocks[0].parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    x = tn.randn(5, 3)
    net(x).sum().backward()
    assert all(p.grad is None for p in net.blocks[0].parameters())
    assert all(p.grad is not None for p in net.blocks[1].parameters())
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(tn.DTypeError, match="requires_grad_: requires_grad must be a bool"):
        net.requires_grad_("no")


def test_dtype_helpers_convert_floating_parameters_and_buffers():
    net = build(tn)
    params = net.parameters()
    for method, dtype in (("double", tn.float64), ("half", tn.float16),
                          ("bfloat16", tn.bfloat16), ("float", tn.float32)):
        assert getattr(net, method)() is net
        assert all(p.dtype is dtype for p in net.parameters()), method
        assert net.step.dtype is dtype and net.blocks[0].mask.dtype is dtype
        assert net.blocks[0].count.dtype is tn.int64     # integer buffers keep their dtype
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    t = build(torch).double()
    assert t.blocks[0].count.dtype == torch.int64 and t.step.dtype == torch.float64


def test_cuda_and_cpu_move_parameters_buffers_and_grads():
    skip_without_cuda()
    net = build(tn)
    net(tn.randn(4, 3)).sum().backward()
    assert net.cuda() is net
    tensors = net.parameters() + net.buffers()
    assert all(t.device == tn.device("cuda") for t in tensors)
    assert all(p.grad.device == tn.device("cuda") for p in net.parameters())
    out = net(tn.randn(4, 3, device="cuda"))
    assert out.device == tn.device("cuda")
    assert net.cpu() is net and all(t.device == tn.device("cpu")
                                    for t in net.parameters() + net.buffers())
    net.to("cuda", tn.float64)
    assert net.blocks[1].running.dtype is tn.float64 and net.blocks[1].count.dtype is tn.int64
    assert net.blocks[1].count.device == tn.device("cuda")


def test_zero_grad_set_to_none_false_fills_zeros():
    net = build(tn)
    net(tn.randn(4, 3)).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# ==============================================================================================
# ModuleList, Flatten, Identity
# ==============================================================================================

def _names(ml):
    return [n for n, _ in ml.named_children()]


def test_module_list_behaves_as_torch_s():
    mods = [tn.nn.Linear(i + 1, i + 2) for i in range(4)]
    tmods = [torch.nn.Linear(i + 1, i + 2) for i in range(4)]
    ml, tml = tn.nn.ModuleList(mods[:2]), torch.nn.ModuleList(tmods[:2])
    for a, b in ((ml, tml),):
        a.append(mods[2]), b.append(tmods[2])
        a.extend([mods[3]]), b.extend([tmods[3]])
        a.insert(1, tn.nn.ReLU()), b.insert(1, torch.nn.ReLU())
    assert len(ml) == len(tml) == 5 and _names(ml) == ["0", "1", "2", "3", "4"]
    assert [type(m).__name__ for m in ml] == [type(m).__name__ for m in tml]
    assert ml[0] is mods[0] and ml[-1] is mods[3] and isinstance(ml[1], tn.nn.ReLU)
    assert [n for n, _ in ml.named_parameters()] == [n for n, _ in tml.named_parameters()]
    sub, tsub = ml[1:4], tml[1:4]
    assert isinstance(sub, tn.nn.ModuleList) and _names(sub) == ["0", "1", "2"]   # renumbered
    assert [n for n, _ in sub.named_parameters()] == [n for n, _ in tsub.named_parameters()]
    del ml[1], tml[1]
    assert _names(ml) == ["0", "1", "2", "3"] and ml[1] is mods[1]
    assert list(ml.state_dict()) == list(tml.state_dict())
    assert ml.pop(0) is mods[0] and len(ml) == 3 and ml[0] is mods[1]
    ml[0] = tn.nn.Identity()
    assert isinstance(ml[0], tn.nn.Identity) and len(ml) == 3
    ml += [tn.nn.Sigmoid()]
    assert len(ml) == 4 and isinstance(ml[3], tn.nn.Sigmoid)
    both = ml + tn.nn.ModuleList([tn.nn.ReLU()])
    assert len(both) == 5 and _names(both)[-1] == "4"
    assert repr(tn.nn.ModuleList()) == repr(torch.nn.ModuleList())
    assert repr(tn.nn.ModuleList([tn.nn.ReLU(), tn.nn.ReLU(), tn.nn.Linear(2, 3)])) == \
        repr(torch.nn.ModuleList([torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.Linear(2, 3)]))


def test_module_list_registers_parameters_for_the_optimizer():
    class Stack(tn.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = tn.nn.ModuleList(tn.nn.Linear(4, 4) for _ in range(3))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x).relu()
            return x
    tn.manual_seed(0)
    net = Stack()
    assert [n for n, _ in net.named_parameters()][:3] == ["layers.0.weight", "layers.0.bias",
                                                          "layers.1.weight"]
    opt = tn.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().numpy().copy() for p in net.parameters()]
    opt.backward_step(net(tn.randn(2, 4)).sum())
    assert all(not np.array_equal(p.detach().numpy(), b)
               for p, b in zip(net.parameters(), before) if p.grad is not None)
    with pytest.raises(tn.TritonnnError, match="ModuleList: forward"):
        net.layers(tn.randn(2, 4))


@pytest.mark.parametrize("call, cls, pattern", [
    (lambda ml: ml[5], tn.IndexOutOfRange, r"ModuleList: index 5 is out of range for 2"),
    (lambda ml: ml["0"], tn.DTypeError, r"ModuleList: an index must be an int or a slice"),
    (lambda ml: ml.append(3), tn.DTypeError, r"ModuleList.append: element 2 is int"),
    (lambda ml: ml.extend([tn.nn.ReLU(), "relu"]), tn.DTypeError,
     r"ModuleList: element 1 is str"),
    (lambda ml: ml.extend(5), tn.DTypeError, r"ModuleList: expected an iterable of Modules"),
    (lambda ml: ml.extend(tn.nn.ReLU()), tn.DTypeError, r"ModuleList.extend: .*use append"),
    (lambda ml: tn.nn.ModuleList([tn.nn.ReLU(), tn.ones(2)]), tn.DTypeError,
     r"ModuleList: element 1 is Tensor"),
    (lambda ml: ml.insert(0, None), tn.DTypeError, r"ModuleList.insert: element 0 is NoneType"),
], ids=["index", "str_index", "append", "extend", "extend_int", "extend_module", "init",
        "insert"])
def test_module_list_bad_input(call, cls, pattern):
    ml = tn.nn.ModuleList([tn.nn.ReLU(), tn.nn.Sigmoid()])
    with pytest.raises(cls, match=pattern):
        call(ml)
    assert len(ml) == 2


@pytest.mark.parametrize("args", [(), (0,), (1, 2), (2, -1), (-3, -2)])
def test_flatten_matches_torch(args, device):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    got = tn.nn.Flatten(*args)(tn.tensor(x, device=device))
    want = torch.nn.Flatten(*args)(torch.from_numpy(x))
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert repr(tn.nn.Flatten(*args)) == repr(torch.nn.Flatten(*args))


def test_flatten_and_identity_edge_cases():
    with pytest.raises(tn.DTypeError, match="Flatten: start_dim and end_dim must be ints"):
        tn.nn.Flatten(1.5)
    x = tn.randn(2, 3, requires_grad=True)
    assert tn.nn.Identity(54, unused="x")(x) is x
    y = tn.nn.Flatten()(x.reshape(2, 3, 1))
    y.sum().backward()
    assert x.grad.tolist() == [[1.0] * 3] * 2
