"""Train a classifier on the bundled handwritten digits the way a real training script does.

AdamW with two parameter groups (weight decay on the weights only), a linear warmup then a
cosine schedule, gradient clipping, Dropout (so the model has a train and an eval mode),
bf16 autocast on a GPU, a checkpoint every few steps and a resume from it that continues
the run exactly where it stopped:

    python examples/train_digits.py                          # device auto
    python examples/train_digits.py --epochs 10 --checkpoint run.safetensors
    python examples/train_digits.py --epochs 10 --checkpoint run.safetensors --resume

It runs unchanged under ``torchrun`` as a single process, on "cpu" or "cuda".
"""
from __future__ import annotations

import argparse
import os
import time

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn.datasets import load_digits, train_test_split


def build_model(device):
    return tn.nn.Sequential(
        tn.nn.Linear(64, 128), tn.nn.ReLU(), tn.nn.Dropout(0.1),
        tn.nn.Linear(128, 64), tn.nn.ReLU(),
        tn.nn.Linear(64, 10),
    ).to(device)


def accuracy(model, x, y):
    model.eval()
    with tn.no_grad():
        hits = (model(x).argmax(dim=1) == y).sum().item()
    model.train()
    return hits / len(y)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50, help="steps of linear warmup")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="a .safetensors file to save every "
                   "--checkpoint-every steps and at the end")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps (to try a resume)")
    args = p.parse_args(argv)
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
    loader = tn.data.DataLoader(tn.data.TensorDataset(x_train, y_train),
                                batch_size=args.batch_size, shuffle=True, seed=args.seed)
    model = build_model(device)
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
    no_decay = [p for name, p in model.named_parameters() if not name.endswith("weight")]
    opt = tn.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                          {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    total_steps = args.epochs * len(loader)
    warmup = min(args.warmup, total_steps - 1)
    sched = tn.optim.lr_scheduler.SequentialLR(opt, [
        tn.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=warmup),
        tn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps - warmup),
    ], milestones=[warmup])

    step = 0
    if args.resume:
        state = tn.load(args.checkpoint, device=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        loader.load_state_dict(state["loader"])
        tn.set_rng_state(state["rng"])
        step = state["step"]
        print(f"resumed from {args.checkpoint} at step {step}")

    def save_checkpoint():
        tn.save({"model": model.state_dict(), "optim": opt.state_dict(),
                 "sched": sched.state_dict(), "loader": loader.state_dict(),
                 "rng": tn.get_rng_state(), "step": step}, args.checkpoint)

    # -- the loop ---------------------------------------------------------------------------
    # bf16 matmuls with float32 accumulation on a GPU; float32 master weights either way
    autocast = tn.autocast(device, dtype=tn.bfloat16, enabled=device == "cuda")
    model.train()
    began = time.perf_counter()
    while step < total_steps:
        epoch_loss, batches = None, 0
        for xb, yb in loader:
            with autocast:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            tn.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            sched.step()
            step += 1
            batches += 1
            epoch_loss = loss.detach() if epoch_loss is None else epoch_loss + loss.detach()
            if args.checkpoint and step % args.checkpoint_every == 0:
                save_checkpoint()
            if step == total_steps or step == args.stop_after:
                break
        if batches:
            print(f"step {step:>5}/{total_steps}: train loss {epoch_loss.item() / batches:.4f}, "
                  f"test accuracy {accuracy(model, x_test, y_test):.2%}, "
                  f"lr {sched.get_last_lr()[0]:.2e}")
        if step == args.stop_after:
            break
    if args.checkpoint:
        save_checkpoint()
    print(f"test accuracy {accuracy(model, x_test, y_test):.2%} after {step} steps "
          f"({time.perf_counter() - began:.1f} s on {device})")
    return model


if __name__ == "__main__":
    main()
