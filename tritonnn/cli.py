"""The ``tritonnn`` command: ``train`` an MLP on the bundled digits, ``info``, ``sweep``.

Every option of ``train`` is checked before any work (values by the parser, the device, the
output file and the split in ``_preflight``); a bad one exits 2 with one line,
``tritonnn train: error: <what> (<value>)``, and no file is written.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import platform
import subprocess
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


def accuracy(model, x, y, batch_size=512, autocast=None):
    """The share of ``x``'s rows that ``model`` classifies as ``y`` says (one host read);
    ``autocast`` makes the context the forward runs in (mixed precision), when given."""
    hits = None
    with tn.no_grad(), (autocast or contextlib.nullcontext)():
        for i in range(0, len(x), batch_size):
            pred = model(x[i:i + batch_size]).argmax(dim=1)
            part = (pred == y[i:i + batch_size]).sum()
            hits = part if hits is None else hits + part
    return hits.item() / len(x)


def _pick_device(choice):
    """``auto`` means a real GPU when there is one (the interpreter is for tests, not training)."""
    if choice != "auto":
        return choice
    return "cuda" if tn.cuda.is_available() else "cpu"


def _file_problem(path, suffix, what):
    """Why ``what`` could not be written at ``path`` (None when it can); writes nothing that
    stays."""
    if not path.endswith(suffix):
        return f"must end in {suffix}, the format {what} is saved in"
    if os.path.isdir(path):
        return "is a folder, not a file name"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"its folder {folder} does not exist"
    try:                                # the one sure test of a folder: write a file into it
        fd, probe = tempfile.mkstemp(prefix=".tritonnn-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        return f"its folder {folder} is not writable: {e.strerror}"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "the file exists and is not writable"
    return None


def _out_problem(out):
    return _file_problem(out, ".safetensors", "the model")


# The options a checkpoint records: a resumed run must be given the same ones, or it would not
# end where the uninterrupted run does. The device, the output files, --quiet and the
# checkpoint options may change.
RUN_OPTIONS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "hidden",
               "test_fraction", "seed", "schedule", "warmup", "clip", "precision", "processes")
# what a checkpoint made before an option existed means by it
OPTION_DEFAULTS = {"processes": 1}
CHECKPOINT_KEYS = {"format", "options", "model", "optim", "sched", "loader", "rng", "epoch",
                   "step", "epoch_loss", "epoch_seen", "history"}
CHECKPOINT_FORMAT = "tritonnn-train-1"


def _checkpoint_path(args):
    return args.checkpoint or args.resume or "digits_checkpoint.safetensors"


def _resume_problem(args):
    """Why ``--resume`` cannot continue this run (None when it can); the checkpoint on success
    is left in ``args.resumed``."""
    path = args.resume
    if not os.path.isfile(path):
        return "no such file"
    try:
        ckpt = tn.load(path)
    except (tn.TritonnnError, OSError) as e:
        return f"not a readable checkpoint: {e}"
    if not isinstance(ckpt, dict) or set(ckpt) != CHECKPOINT_KEYS \
            or ckpt["format"] != CHECKPOINT_FORMAT:
        return "not a checkpoint of tritonnn train (made by --checkpoint-every)"
    options = ckpt["options"]
    for name in RUN_OPTIONS:
        ours, theirs = getattr(args, name), options.get(name, OPTION_DEFAULTS.get(name))
        if name == "hidden":
            ours = list(ours)
        if ours != theirs:
            flag = "--nproc" if name == "processes" else "--" + name.replace("_", "-")
            return (f"the checkpoint was made with {flag} {_shown_option(theirs)}, this run has "
                    f"{flag} {_shown_option(ours)}; a resumed run takes the same training "
                    f"options")
    args.resumed = ckpt
    return None


def _shown_option(value):
    return ",".join(map(str, value)) or "''" if isinstance(value, list) else str(value)


# torchrun's environment: a process it started is one rank of a job
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _under_torchrun():
    return all(k in os.environ for k in TORCHRUN_ENV)


def _check_split(prog, batch, n, who):
    """The global batch splits evenly over ``n`` processes, or a usage error naming ``who``."""
    if batch % n:
        _usage_error(prog, f"argument --batch-size: the global batch must be a multiple of "
                     f"{who} ({batch})")


def _launch(args, argv):
    """``--nproc N``: the same command in N local processes, through torchrun's launcher
    (``python -m torch.distributed.run --standalone``); returns its exit status."""
    prog = "tritonnn train"
    if importlib.util.find_spec("torch") is None:
        _usage_error(prog, f"argument --nproc: needs torch installed (pip install torch), "
                     f"whose launcher starts the processes ({args.nproc})")
    _check_split(prog, args.batch_size, args.nproc, f"--nproc {args.nproc}")
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.nproc}", "-m", "tritonnn.cli", *rest]
    return subprocess.run(cmd).returncode


def _preflight(args):
    """What the parser cannot check alone: the device, the files, the split and schedule sizes.
    Returns ``(device, images, labels, train_idx, test_idx)``; a problem is a usage error."""
    prog = "tritonnn train"
    args.resumed = None
    args.processes = int(os.environ["WORLD_SIZE"]) if _under_torchrun() else 1
    if args.nproc != 1 and _under_torchrun():
        _usage_error(prog, f"argument --nproc: this process is one of torchrun's "
                     f"{args.processes}; --nproc launches, it does not go with torchrun "
                     f"({args.nproc})")
    _check_split(prog, args.batch_size, args.processes, f"the {args.processes} processes")
    files = [("--out", args.out, ".safetensors", "the model")]
    if args.checkpoint_every or args.checkpoint:
        files.append(("--checkpoint", _checkpoint_path(args), ".safetensors", "a checkpoint"))
    if args.plot:
        files.append(("--plot", args.plot, ".png", "the plot"))
    for flag, path, suffix, what in files:
        problem = _file_problem(path, suffix, what) if path else None
        if problem:
            _usage_error(prog, f"argument {flag}: {problem} ({path})")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _usage_error(prog, "argument --plot: needs matplotlib (pip install "
                         f"'tritonnn[plot]') ({args.plot})")
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
    steps = args.epochs * -(-len(tr) // args.batch_size)
    if args.warmup >= steps:
        _usage_error(prog, f"argument --warmup: must be below the run's {steps} steps "
                     f"({args.epochs} epochs of {-(-len(tr) // args.batch_size)} batches) "
                     f"({args.warmup})")
    if args.resume:
        problem = _resume_problem(args)
        if problem:
            _usage_error(prog, f"argument --resume: {problem} ({args.resume})")
    return device, images, labels, tr, te


def make_schedule(opt, schedule, warmup, steps):
    """The learning-rate schedule over ``steps`` optimizer steps (stepped once per batch):
    ``warmup`` steps rising linearly to the set rate, then constant, or a cosine decay to 0
    over the remaining steps. None for a constant rate without warm-up."""
    sch = tn.optim.lr_scheduler
    ramp = sch.LinearLR(opt, start_factor=1 / (warmup + 1), total_iters=warmup) if warmup else None
    if schedule == "constant":
        return ramp
    cosine = sch.CosineAnnealingLR(opt, T_max=steps - warmup)
    return sch.SequentialLR(opt, [ramp, cosine], milestones=[warmup]) if ramp else cosine


def train_epoch(model, opt, loader, bar=None, refresh_s=REFRESH_S, clock=time.monotonic, *,
                sched=None, clip=0.0, autocast=None, total=None, seen=0, after_step=None):
    """One pass over ``loader`` (the rest of it, for a loader resumed mid-epoch); returns the
    mean training loss over the epoch's samples.

    Each batch: forward (in the context ``autocast()`` makes, when given), backward,
    ``clip_grad_norm_`` to ``clip`` when > 0, an optimizer step and a ``sched`` step. The loss
    is summed on the device, so a batch costs no host sync; ``total`` and ``seen`` carry the
    sum and count of a resumed epoch's earlier batches, and ``after_step(total, seen)`` is
    called after each step (checkpoints). ``bar`` (a tqdm made with ``mininterval=0,
    miniters=1``, so it draws when told, or None) is advanced by the batches done and
    redrawn, with the running loss read on the host, at most every ``refresh_s`` seconds;
    the epoch's last batches are counted without a redraw (the caller's epoch line redraws
    it).
    """
    model.train()
    params = list(model.parameters()) if clip else None
    done = counted = 0
    drawn = clock()
    for done, (xb, yb) in enumerate(loader, 1):
        with (autocast or contextlib.nullcontext)():
            loss = F.cross_entropy(model(xb), yb)
        if clip:
            opt.zero_grad()
            loss.backward()
            tn.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
        else:
            opt.backward_step(loss)
        if sched is not None:
            sched.step()
        with tn.no_grad():
            part = loss.detach() * len(yb)
            total = part if total is None else total + part
        seen += len(yb)
        if after_step is not None:
            after_step(total, seen)
        if bar is not None and clock() - drawn >= refresh_s:
            bar.set_postfix(loss=f"{total.item() / seen:.4f}", refresh=False)
            bar.update(done - counted)
            counted, drawn = done, clock()
    mean = total.item() / seen
    if bar is not None:
        bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
        bar.n += done - counted
    return mean


def save_plot(history, path, title):
    """The training loss and the test accuracy per epoch, side by side, as a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    epochs = [h[0] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h[1] for h in history], marker=".")
    left.set(xlabel="epoch", ylabel="train loss", yscale="log", title="training loss")
    right.plot(epochs, [100 * h[2] for h in history], marker=".", color="tab:green")
    right.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def cmd_train(args, argv=()):
    if args.nproc > 1 and not _under_torchrun():
        return _launch(args, argv)
    device, images, labels, tr, te = _preflight(args)
    world = args.processes
    if world > 1 or _under_torchrun():
        # one rank of a data-parallel job: the same model everywhere, each rank its share of
        # every batch, gradients averaged; rank 0 alone logs and writes files
        tn.distributed.init()
        if tn.distributed.rank() != 0:
            args.quiet, args.out, args.plot = True, "", None
    rank0 = world == 1 or tn.distributed.rank() == 0
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
    train_set = tn.data.TensorDataset(x_train, y_train)
    sampler = None
    if tn.distributed.is_initialized():
        sampler = tn.data.DistributedSampler(train_set, shuffle=True, seed=args.seed)
        loader = tn.data.DataLoader(train_set, batch_size=args.batch_size // world,
                                    sampler=sampler)
        stepped = tn.nn.parallel.DistributedDataParallel(model)
    else:
        loader = tn.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                    seed=args.seed)
        stepped = model
    steps = args.epochs * len(loader)
    sched = make_schedule(opt, args.schedule, args.warmup, steps)
    amp = (lambda: tn.autocast(device, dtype=tn.bfloat16)) if args.precision == "bf16" else None
    first_epoch, step, total, seen, history = 1, 0, None, 0, []
    if args.resumed is not None:
        ckpt = args.resumed
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        if sched is not None:
            sched.load_state_dict(ckpt["sched"])
        loader.load_state_dict(ckpt["loader"])
        tn.set_rng_state(ckpt["rng"])
        first_epoch, step, seen = ckpt["epoch"], ckpt["step"], ckpt["epoch_seen"]
        total = None if ckpt["epoch_loss"] is None else ckpt["epoch_loss"].to(device)
        history = [list(h) for h in ckpt["history"]]
    n_params = sum(p.numel() for p in model.parameters())
    if not args.quiet:
        extras = [f"{args.schedule} schedule"] + [f"warmup {args.warmup}"] * bool(args.warmup) \
            + [f"clip {args.clip:g}"] * bool(args.clip) + [args.precision]
        where = f"device {device}" + (f" x {world} processes" if sampler is not None else "")
        print(f"training a {architecture} MLP ({n_params:,} parameters) on {len(tr)} digits, "
              f"testing on {len(te)}, {where}, {args.optimizer} lr={args.lr}, "
              f"{', '.join(extras)}", flush=True)
        if args.resumed is not None:
            print(f"resumed from {args.resume} at step {step} of {steps} (epoch {first_epoch})",
                  flush=True)
    width = len(str(args.epochs))
    ckpt_path = _checkpoint_path(args)

    def name(epoch):
        return f"epoch {epoch:>{width}}/{args.epochs}"

    def checkpoint(epoch, total, seen):
        if not rank0:           # every rank holds the same state: rank 0 writes it
            return
        tn.save({"format": CHECKPOINT_FORMAT,
                 "options": {k: list(v) if k == "hidden" else v
                             for k, v in ((k, getattr(args, k)) for k in RUN_OPTIONS)},
                 "model": model.state_dict(), "optim": opt.state_dict(),
                 "sched": None if sched is None else sched.state_dict(),
                 "loader": loader.state_dict(), "rng": tn.get_rng_state(), "epoch": epoch,
                 "step": step, "epoch_loss": total, "epoch_seen": seen, "history": history},
                ckpt_path)

    bar = None
    if show_bar:        # mininterval=0, miniters=1: it draws when train_epoch says so
        bar = tqdm(total=steps, initial=step, desc=name(first_epoch), unit="batch", leave=False,
                   file=sys.stderr, mininterval=0, miniters=1)
    start = time.perf_counter()
    for epoch in range(first_epoch, args.epochs + 1):
        began, pending = time.perf_counter(), False

        def after_step(total, seen):
            nonlocal step, pending
            step += 1
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                if step % len(loader):
                    checkpoint(epoch, total, seen)
                else:           # the epoch's last batch: saved after its line, as finished
                    pending = True

        if sampler is not None:
            sampler.set_epoch(epoch - 1)
        loss = train_epoch(stepped, opt, loader, bar, sched=sched, clip=args.clip,
                           autocast=amp, total=total, seen=seen, after_step=after_step)
        if sampler is not None:     # the global batch's mean: every rank saw as many samples
            mean = tn.tensor([loss], dtype=tn.float64)
            tn.distributed.all_reduce(mean, op="mean")
            loss = mean.item()
        total, seen = None, 0
        model.eval()
        test_acc = accuracy(model, x_test, y_test, autocast=amp)
        history.append([epoch, loss, test_acc])
        line = (f"{name(epoch)}: train loss {loss:.4f}, test accuracy {test_acc:.2%} "
                f"({time.perf_counter() - began:.1f} s)")
        if bar is not None:     # the line goes above the bar, redrawn for the next epoch
            bar.set_description(name(min(epoch + 1, args.epochs)), refresh=False)
            bar.write(line, file=sys.stderr)
        elif not args.quiet:
            print(line, file=sys.stderr, flush=True)
        if pending:
            checkpoint(epoch + 1, None, 0)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    model.eval()
    train_acc = accuracy(model, x_train, y_train, autocast=amp)
    test_acc = accuracy(model, x_test, y_test, autocast=amp)
    if rank0:
        print(f"train accuracy {train_acc:.2%}  test accuracy {test_acc:.2%}  "
              f"({elapsed:.1f} s training)")
    if args.out:
        tn.save(model.state_dict(), args.out, metadata={
            "architecture": architecture, "test_accuracy": f"{test_acc:.4f}",
            "tritonnn": tn.__version__})
        print(f"saved the model to {args.out}")
    if args.plot:
        save_plot(history, args.plot, f"tritonnn train: {architecture} MLP, {args.optimizer} "
                  f"lr={args.lr}, {args.schedule}, {args.precision}")
        print(f"saved the curves to {args.plot}")
    if tn.distributed.is_initialized():
        tn.distributed.destroy()
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
    t.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate after the warm-up: constant, or a cosine decay to 0 "
                   "(per batch)")
    t.add_argument("--warmup", default=0, help="steps (batches) of linear warm-up, >= 0",
                   type=_checked(int, lambda v: v >= 0, "must be an integer >= 0"))
    t.add_argument("--clip", default=0.0, help="clip the gradients' total 2-norm to this "
                   "(0: no clipping)",
                   type=_checked(float, lambda v: 0 <= v < math.inf, "must be a number >= 0"))
    t.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: matmuls in bfloat16 under tn.autocast, float32 master weights")
    t.add_argument("--checkpoint-every", default=0, metavar="N",
                   help="save a checkpoint every N steps (batches); 0: never",
                   type=_checked(int, lambda v: v >= 0, "must be an integer >= 0"))
    t.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="where checkpoints go (default: the --resume file, else "
                   "digits_checkpoint.safetensors)")
    t.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run a checkpoint stopped (same training options)")
    t.add_argument("--plot", default=None, metavar="PATH",
                   help="save the loss and accuracy curves as a PNG (needs matplotlib)")
    t.add_argument("--quiet", action="store_true",
                   help="print only the final summary (no bar, no epoch lines)")
    t.add_argument("--nproc", default=1, metavar="N", type=integer_from_1,
                   help="train data-parallel in N local processes (torchrun's launcher; "
                   "--batch-size stays the global batch); rank 0 logs and saves")
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
        if args.cmd == "train":
            return args.fn(args, sys.argv[1:] if argv is None else list(argv))
        return args.fn(args)
    except tn.TritonnnError as e:
        print(f"tritonnn {args.cmd}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
