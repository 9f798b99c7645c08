"""Train a classifier on the bundled handwritten digits the way a real training script does.

AdamW with two parameter groups (weight decay on the weight matrices only, none on biases
and norms), a linear warmup then a cosine schedule, gradient clipping, Dropout (so the model
has a train and an eval mode), bf16 autocast on a GPU, and a checkpoint that a later run
resumes from, continuing bit for bit where the first one stopped:

    python examples/train_digits.py                     # device auto, 30 epochs
    python examples/train_digits.py --checkpoint run.safetensors --stop-after 10
    python examples/train_digits.py --checkpoint run.safetensors --resume

(``--stop-after`` ends the run early, as a crash or a time limit would; the resumed run then
finishes the planned ``--epochs`` and saves the same final checkpoint as an uninterrupted run.)

The same script trains data-parallel when torchrun launches it, one process per GPU (or CPU
process): ``--batch-size`` stays the global batch, each rank takes its share of every batch
(``DistributedSampler``), ``DistributedDataParallel`` averages the gradients, and only rank 0
prints and writes the checkpoint:

    torchrun --nproc-per-node 2 examples/train_digits.py --device cpu
"""
from __future__ import annotations

import argparse
import os
import time

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn.datasets import load_digits, train_test_split


def build_model(dropout):
    return tn.nn.Sequential(
        tn.nn.Linear(64, 128), tn.nn.ReLU(), tn.nn.Dropout(dropout),
        tn.nn.Linear(128, 64), tn.nn.ReLU(),
        tn.nn.Linear(64, 10),
    )


def param_groups(model, weight_decay):
    """Weight decay on matrices (linear and embedding weights), none on biases and norm
    scales: shrinking those toward zero only hurts."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def accuracy(model, x, y):
    model.eval()                    # Dropout off
    with tn.no_grad():
        hits = (model(x).argmax(dim=1) == y).sum().item()
    model.train()
    return hits / len(y)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=50, help="steps of linear warmup")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None,
                   help="a .safetensors file, written at the end of every epoch")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                   help="also write it every this many steps (0: at epoch ends only)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--stop-after", type=float, default=None, metavar="EPOCHS",
                   help="stop (and checkpoint) after this many epochs, which may be "
                        "fractional, as if interrupted; --resume finishes the run")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.resume and not args.checkpoint:
        p.error("--resume needs --checkpoint, the file to resume from")
    if args.resume and not os.path.exists(args.checkpoint):
        p.error(f"--resume: there is no checkpoint at {args.checkpoint}")
    if args.stop_after is not None and args.stop_after <= 0:
        p.error(f"--stop-after must be > 0, got {args.stop_after}")
    return args


def main(argv=None):
    args = parse_args(argv)
    # under torchrun: one rank of a data-parallel job (init binds "cuda" to this rank's GPU)
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        tn.distributed.init()
    rank, world = (tn.distributed.rank(), tn.distributed.world_size()) if distributed else (0, 1)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} is the global batch: it must be a "
                         f"multiple of the {world} processes")
    log = print if rank == 0 else (lambda *a, **k: None)
    device = args.device
    if device == "auto":
        device = "cuda" if tn.cuda.is_available() else "cpu"

    # -- data, model, optimizer, schedule ------------------------------------------------------
    tn.manual_seed(args.seed)
    images, labels = load_digits()
    train_idx, test_idx = train_test_split(len(images), 0.2, args.seed)
    x_train = tn.tensor(images[train_idx], device=device)
    y_train = tn.tensor(labels[train_idx], device=device)
    x_test = tn.tensor(images[test_idx], device=device)
    y_test = tn.tensor(labels[test_idx], device=device)
    train_set = tn.data.TensorDataset(x_train, y_train)
    if distributed:             # each rank its own share of every epoch, all ranks in step
        sampler = tn.data.DistributedSampler(train_set, shuffle=True, seed=args.seed)
        loader = tn.data.DataLoader(train_set, batch_size=args.batch_size // world,
                                    sampler=sampler)
    else:
        sampler = None
        loader = tn.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                    seed=args.seed)
    net = build_model(args.dropout).to(device)
    # the wrapper averages the gradients across the ranks; `net` stays the plain model
    model = tn.nn.parallel.DistributedDataParallel(net) if distributed else net
    opt = tn.optim.AdamW(param_groups(net, args.weight_decay), lr=args.lr)

    steps_per_epoch = len(loader)
    total_steps = args.epochs * steps_per_epoch
    stop_at = total_steps
    if args.stop_after is not None:
        stop_at = min(total_steps, max(1, round(args.stop_after * steps_per_epoch)))
    warmup = max(0, min(args.warmup, total_steps - 1))
    cosine = tn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps - warmup))
    sched = cosine if not warmup else tn.optim.lr_scheduler.SequentialLR(opt, [
        tn.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warmup), cosine,
    ], milestones=[warmup])

    # -- checkpoint: everything the rest of the run depends on ---------------------------------
    step = 0
    loss_sum, batches = tn.zeros((), device=device), 0      # this epoch's, so far

    def save_checkpoint():
        if rank != 0:           # every rank holds the same state: one writes it
            return
        # tn.save writes a temporary file and renames it: a crash never leaves half a checkpoint
        tn.save({"model": net.state_dict(), "optim": opt.state_dict(),
                 "sched": sched.state_dict(), "loader": loader.state_dict(),
                 "rng": tn.get_rng_state(), "step": step, "epochs": args.epochs,
                 "epoch_loss_sum": loss_sum, "epoch_batches": batches}, args.checkpoint)

    if args.resume:
        state = tn.load(args.checkpoint, device=device)
        if state["epochs"] != args.epochs:
            raise SystemExit(f"{args.checkpoint} is a checkpoint of a {state['epochs']}-epoch "
                             f"run (its schedule depends on it); resume with --epochs "
                             f"{state['epochs']}")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        loader.load_state_dict(state["loader"])
        tn.set_rng_state(state["rng"])              # Dropout's masks continue where they were
        step, loss_sum, batches = state["step"], state["epoch_loss_sum"], state["epoch_batches"]
        log(f"resumed from {args.checkpoint} at step {step}/{total_steps}")

    # -- the loop ------------------------------------------------------------------------------
    # bf16 matmuls with float32 accumulation on a GPU; the weights stay float32 either way
    autocast = tn.autocast(device, dtype=tn.bfloat16, enabled=device == "cuda")
    model.train()
    began = time.perf_counter()
    while step < stop_at:
        if sampler is not None:
            sampler.set_epoch(step // steps_per_epoch)      # a new shuffle every epoch
        for xb, yb in loader:
            with autocast:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            tn.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            sched.step()
            step += 1
            loss_sum, batches = loss_sum + loss.detach(), batches + 1   # no host sync per step
            epoch_done = step % steps_per_epoch == 0
            if epoch_done:
                if distributed:     # the loss of the whole global batch: the ranks' mean
                    tn.distributed.all_reduce(loss_sum, op="mean")
                log(f"epoch {step // steps_per_epoch:>2}/{args.epochs}: train loss "
                    f"{loss_sum.item() / batches:.4f}, test accuracy "
                    f"{accuracy(net, x_test, y_test):.2%}, lr {sched.get_last_lr()[0]:.2e}",
                    flush=True)
                loss_sum, batches = tn.zeros((), device=device), 0
            if args.checkpoint and (epoch_done or step == stop_at or (
                    args.checkpoint_every and step % args.checkpoint_every == 0)):
                save_checkpoint()
            if step == stop_at:
                break
    elapsed = time.perf_counter() - began
    where = device + (f", {world} processes" if distributed else "")
    if step < total_steps:
        log(f"stopped at step {step}/{total_steps} ({elapsed:.1f} s on {where})"
            + (f"; continue with --resume from {args.checkpoint}" if args.checkpoint else ""))
    else:
        log(f"final test accuracy {accuracy(net, x_test, y_test):.2%} after {step} steps "
            f"({elapsed:.1f} s on {where})")
    if distributed:
        tn.distributed.destroy()
    return net


if __name__ == "__main__":
    main()
