"""The ``tritonnn`` command: ``train`` an MLP on the bundled digits, ``info``, ``sweep``."""
from __future__ import annotations

import argparse
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version

import tritonnn as tn
import tritonnn.nn.functional as F

from .datasets import load_digits, train_test_split
from .device import interpreting


def _version(pkg):
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def _pick_device(choice):
    """``auto`` means a real GPU when there is one (the interpreter is for tests, not training)."""
    if choice != "auto":
        return choice
    return "cuda" if tn.cuda.is_available() else "cpu"


def cmd_info(args):
    print(f"tritonnn   {tn.__version__}")
    print(f"python     {platform.python_version()} ({sys.executable})")
    for pkg in ("numpy", "safetensors", "ml-dtypes", "torch", "triton"):
        print(f"{pkg:<10} {_version(pkg)}")
    print("devices:")
    print("  cpu      numpy backend (tritonnn.fallback_cpu)")
    gpu = tn.cuda.is_available()
    if interpreting():
        mode = "Triton kernels through Triton's interpreter on the host (TRITONNN_INTERPRET=1)"
    elif gpu:
        mode = f"Triton kernels compiled for {tn.cuda.get_device_name()}"
    else:
        mode = "unavailable (no GPU; set TRITONNN_INTERPRET=1 to run the kernels interpreted)"
    print(f"  cuda     {mode}")
    print(f"gpu        {'available' if gpu else 'none'}")
    print(f"fp32 matmul precision: {tn.get_float32_matmul_precision()}")
    return 0


def build_mlp(inputs, hidden, classes, device):
    layers, width = [], inputs
    for h in hidden:
        layers += [tn.nn.Linear(width, h), tn.nn.ReLU()]
        width = h
    layers.append(tn.nn.Linear(width, classes))
    return tn.nn.Sequential(*layers).to(device)


def accuracy(model, x, y, batch_size=512):
    hits = 0
    with tn.no_grad():
        for i in range(0, len(x), batch_size):
            pred = model(x[i:i + batch_size]).argmax(dim=1)
            hits += (pred == y[i:i + batch_size]).sum().item()
    return hits / len(x)


def cmd_train(args):
    from tqdm import tqdm           # here: 30 ms of start-up that only training needs
    device = _pick_device(args.device)
    tn.manual_seed(args.seed)
    images, labels = load_digits()
    tr, te = train_test_split(len(images), args.test_fraction, args.seed)
    x_train, y_train = tn.tensor(images[tr], device=device), tn.tensor(labels[tr], device=device)
    x_test, y_test = tn.tensor(images[te], device=device), tn.tensor(labels[te], device=device)
    hidden = [int(h) for h in args.hidden.split(",") if h]
    model = build_mlp(64, hidden, 10, device)
    if args.optimizer == "sgd":
        opt = tn.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                           weight_decay=args.weight_decay)
    else:
        opt = tn.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x_train, y_train),
                                batch_size=args.batch_size, shuffle=True, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training a {'-'.join(map(str, [64, *hidden, 10]))} MLP ({n_params:,} parameters) on "
          f"{len(tr)} digits, testing on {len(te)}, device {device}, {args.optimizer} lr={args.lr}")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch:>3}/{args.epochs}", leave=False,
                   disable=args.quiet, unit="batch")
        total, seen = 0.0, 0
        for xb, yb in bar:
            loss = F.cross_entropy(model(xb), yb)
            opt.backward_step(loss)
            total += loss.item() * len(yb)
            seen += len(yb)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        if not args.quiet and (epoch == args.epochs or epoch % max(1, args.epochs // 5) == 0):
            print(f"epoch {epoch:>3}: train loss {total / seen:.4f}")
    elapsed = time.perf_counter() - start
    model.eval()
    train_acc, test_acc = accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)
    print(f"train accuracy {train_acc:.2%}  test accuracy {test_acc:.2%}  "
          f"({elapsed:.1f} s training)")
    if args.out:
        tn.save(model.state_dict(), args.out, metadata={
            "architecture": "-".join(map(str, [64, *hidden, 10])),
            "test_accuracy": f"{test_acc:.4f}", "tritonnn": tn.__version__})
        print(f"saved the model to {args.out}")
    return 0


def cmd_sweep(args):
    from .perf import sweep         # here: the sweeps load only for `tritonnn sweep`
    return sweep.cli(args.sweep_args, prog="tritonnn sweep")


def main(argv=None):
    p = argparse.ArgumentParser(prog="tritonnn", description="tritonnn command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train an MLP on the bundled UCI digits data set")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--hidden", default="128,64", help="hidden widths, comma separated")
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--out", default="digits_mlp.safetensors", help="where to save ('' to skip)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)
    i = sub.add_parser("info", help="versions, devices and the active backend")
    i.set_defaults(fn=cmd_info)
    # the sweep parses its own options (tritonnn.perf.sweep), so they are written once
    s = sub.add_parser("sweep", help="run the kernel performance sweeps (tritonnn.perf); "
                       "tritonnn sweep --help lists their options", add_help=False)
    s.set_defaults(fn=cmd_sweep)
    args, rest = p.parse_known_args(argv)
    if args.cmd == "sweep":
        args.sweep_args = rest
    elif rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.fn(args)
    except tn.TritonnnError as e:
        print(f"tritonnn {args.cmd}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
