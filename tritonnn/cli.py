"""The ``tritonnn`` command: ``train`` an MLP on the bundled digits, ``info``, ``sweep``.

Every option of ``train`` is checked before any work (values by the parser, the device, the
output file and the split in ``_preflight``); a bad one exits 2 with one line,
``tritonnn train: error: <what> (<value>)``, and no file is written.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version

import tritonnn as tn
import tritonnn.nn.functional as F

from .backends import backend
from .datasets import load_digits, train_test_split
from .device import as_device, interpreting

REFRESH_S = 0.25        # the progress bar is redrawn (and the running loss read) at most this often
SEED_END = 2 ** 64      # tn.manual_seed keeps 64 bits; larger seeds would alias smaller ones


def _version(pkg):
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


# ==============================================================================================
# usage errors: one line, exit 2
# ==============================================================================================


def _usage_error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block; ``--help`` prints that)."""

    def error(self, message):
        _usage_error(self.prog, message)


def _checked(convert, ok, rule):
    """An argparse ``type``: ``convert(text)``, refused unless ``ok(value)``; says ``rule``."""
    def parse(text):
        try:
            value = convert(text)
            if ok(value):
                return value
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"{rule} ({text})")
    return parse


def _hidden_widths(text):
    """``"128,64"`` -> ``[128, 64]``; ``""`` -> ``[]``: no hidden layer (softmax regression)."""
    if not text.strip():
        return []
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"must be positive integers separated by commas, or '' for no hidden layer ({text})")
    return widths


# ==============================================================================================
# info
# ==============================================================================================


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


# ==============================================================================================
# train
# ==============================================================================================


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


def _pick_device(choice):
    """``auto`` means a real GPU when there is one (the interpreter is for tests, not training)."""
    if choice != "auto":
        return choice
    return "cuda" if tn.cuda.is_available() else "cpu"


def _out_problem(out):
    """Why the model could not be saved at ``out`` (None when it can); writes nothing that stays."""
    if not out.endswith(".safetensors"):
        return "must end in .safetensors, the format the model is saved in"
    if os.path.isdir(out):
        return "is a folder, not a file name"
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        return f"its folder {folder} does not exist"
    try:                                # the one sure test of a folder: write a file into it
        fd, probe = tempfile.mkstemp(prefix=".tritonnn-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        return f"its folder {folder} is not writable: {e.strerror}"
    if os.path.exists(out) and not os.access(out, os.W_OK):
        return "the file exists and is not writable"
    return None


def _preflight(args):
    """What the parser cannot check alone: the device, the output file and the split sizes.
    Returns ``(device, images, labels, train_idx, test_idx)``; a problem is a usage error."""
    prog = "tritonnn train"
    problem = _out_problem(args.out) if args.out else None
    if problem:
        _usage_error(prog, f"argument --out: {problem} ({args.out})")
    device = _pick_device(args.device)
    try:
        backend(as_device(device))      # loads it: numpy, or torch and triton (GPU or interpreter)
    except tn.TritonnnError as e:
        _usage_error(prog, f"argument --device: {e} ({args.device})")
    images, labels = load_digits()
    tr, te = train_test_split(len(images), args.test_fraction, args.seed)
    if not len(tr) or not len(te):
        _usage_error(prog, f"argument --test-fraction: leaves {len(tr)} training and {len(te)} "
                     f"test digits of {len(images)}; both need at least one "
                     f"({args.test_fraction})")
    return device, images, labels, tr, te


def train_epoch(model, opt, loader, bar=None, refresh_s=REFRESH_S, clock=time.monotonic):
    """One pass over ``loader``; returns the mean training loss over its samples.

    The loss is summed on the device, so a batch costs no host sync. ``bar`` (a tqdm made with
    ``mininterval=0, miniters=1``, so it draws when told, or None) is advanced by the batches
    done and redrawn, with the running loss read on the host, at most every ``refresh_s``
    seconds; the epoch's last batches are counted without a redraw (the caller's epoch line
    redraws it).
    """
    model.train()
    total, seen, counted, drawn = None, 0, 0, clock()
    for done, (xb, yb) in enumerate(loader, 1):
        loss = F.cross_entropy(model(xb), yb)
        opt.backward_step(loss)
        with tn.no_grad():
            part = loss.detach() * len(yb)
            total = part if total is None else total + part
        seen += len(yb)
        if bar is not None and clock() - drawn >= refresh_s:
            bar.set_postfix(loss=f"{total.item() / seen:.4f}", refresh=False)
            bar.update(done - counted)
            counted, drawn = done, clock()
    mean = total.item() / seen
    if bar is not None:
        bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
        bar.n += len(loader) - counted
    return mean


def cmd_train(args):
    device, images, labels, tr, te = _preflight(args)
    # one bar for the run on a terminal; a redirected log gets one line per epoch; --quiet neither
    show_bar = not args.quiet and sys.stderr.isatty()
    if show_bar:
        from tqdm import tqdm       # here: 30 ms of start-up that only training needs
    tn.manual_seed(args.seed)
    x_train, y_train = tn.tensor(images[tr], device=device), tn.tensor(labels[tr], device=device)
    x_test, y_test = tn.tensor(images[te], device=device), tn.tensor(labels[te], device=device)
    architecture = "-".join(map(str, [64, *args.hidden, 10]))
    model = build_mlp(64, args.hidden, 10, device)
    if args.optimizer == "sgd":
        opt = tn.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                           weight_decay=args.weight_decay)
    else:
        opt = tn.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x_train, y_train),
                                batch_size=args.batch_size, shuffle=True, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    if not args.quiet:
        print(f"training a {architecture} MLP ({n_params:,} parameters) on {len(tr)} digits, "
              f"testing on {len(te)}, device {device}, {args.optimizer} lr={args.lr}", flush=True)
    width = len(str(args.epochs))

    def name(epoch):
        return f"epoch {epoch:>{width}}/{args.epochs}"

    bar = None
    if show_bar:        # mininterval=0, miniters=1: it draws when train_epoch says so
        bar = tqdm(total=args.epochs * len(loader), desc=name(1), unit="batch", leave=False,
                   file=sys.stderr, mininterval=0, miniters=1)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        began = time.perf_counter()
        loss = train_epoch(model, opt, loader, bar)
        line = f"{name(epoch)}: train loss {loss:.4f} ({time.perf_counter() - began:.1f} s)"
        if bar is not None:     # the line goes above the bar, redrawn for the next epoch
            bar.set_description(name(min(epoch + 1, args.epochs)), refresh=False)
            bar.write(line, file=sys.stderr)
        elif not args.quiet:
            print(line, file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    model.eval()
    train_acc, test_acc = accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)
    print(f"train accuracy {train_acc:.2%}  test accuracy {test_acc:.2%}  "
          f"({elapsed:.1f} s training)")
    if args.out:
        tn.save(model.state_dict(), args.out, metadata={
            "architecture": architecture, "test_accuracy": f"{test_acc:.4f}",
            "tritonnn": tn.__version__})
        print(f"saved the model to {args.out}")
    return 0


# ==============================================================================================
# sweep
# ==============================================================================================


def cmd_sweep(args):
    from .perf import sweep         # here: the sweeps load only for `tritonnn sweep`
    return sweep.cli(args.sweep_args, prog="tritonnn sweep", parser_class=_Parser)


# ==============================================================================================
# the command line
# ==============================================================================================


def main(argv=None):
    p = _Parser(prog="tritonnn", description="tritonnn command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train an MLP on the bundled UCI digits data set",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    integer_from_1 = _checked(int, lambda v: v >= 1, "must be an integer >= 1")
    t.add_argument("--epochs", type=integer_from_1, default=40, help=">= 1")
    t.add_argument("--batch-size", type=integer_from_1, default=32, help=">= 1")
    t.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="optimizer")
    t.add_argument("--lr", type=_checked(float, lambda v: 0 < v < math.inf, "must be a number > 0"),
                   default=0.05, help="learning rate, > 0")
    t.add_argument("--momentum", type=_checked(float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
                   default=0.9, help="SGD momentum, in [0, 1)")
    t.add_argument("--weight-decay", default=1e-4, help=">= 0",
                   type=_checked(float, lambda v: 0 <= v < math.inf, "must be a number >= 0"))
    t.add_argument("--hidden", type=_hidden_widths, default="128,64",
                   help="hidden widths, comma separated; '' for none (softmax regression)")
    t.add_argument("--test-fraction", default=0.2, help="in (0, 1), seeded split of the digits",
                   type=_checked(float, lambda v: 0 < v < 1, "must be in (0, 1)"))
    t.add_argument("--seed", default=0, help="in [0, 2**64): split, weights, batch order",
                   type=_checked(int, lambda v: 0 <= v < SEED_END,
                                 "must be an integer in [0, 2**64)"))
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda with a GPU, else cpu")
    t.add_argument("--out", default="digits_mlp.safetensors",
                   help="where to save, a .safetensors file ('' to skip); checked before training")
    t.add_argument("--quiet", action="store_true",
                   help="print only the final summary (no bar, no epoch lines)")
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
        _usage_error(f"tritonnn {args.cmd}", f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.fn(args)
    except tn.TritonnnError as e:
        print(f"tritonnn {args.cmd}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
