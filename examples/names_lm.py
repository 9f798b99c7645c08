"""A character-level language model of first names: it learns the 1990 US Census first names
and then makes up new ones.

Each name is read one letter at a time; from the previous ``--context`` letters the model
predicts the next one (a-z, or "." for the end of the name). The letters are embedded
(``nn.Embedding``), their embeddings joined and passed through a small residual stack with
LayerNorm and GELU, and the vocabulary head and its loss are computed together by
``F.linear_cross_entropy``, which never holds the full logits. AdamW (no weight decay on
biases and norms) follows a warmup-then-cosine ``LambdaLR``. New names are drawn letter by
letter with ``tn.multinomial`` from the softmax of the head's output, seeded by ``--seed``.

    python examples/names_lm.py                     # device auto; ~15 s on one cpu core
    python examples/names_lm.py --steps 300 --samples 5 --seed 1
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn.datasets import load_names

END = "."                           # ends a name; also pads the context before its first letter
ALPHABET = END + "abcdefghijklmnopqrstuvwxyz"
STOI = {c: i for i, c in enumerate(ALPHABET)}


def examples(names, context):
    """(contexts, next letters) as int64 arrays: every position of every name, END included."""
    xs, ys = [], []
    for name in names:
        window = [0] * context
        for ch in name + END:
            xs.append(window)
            ys.append(STOI[ch])
            window = window[1:] + [STOI[ch]]
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)


class NamesModel(tn.nn.Module):
    """Embeddings of the context letters -> a linear layer -> residual blocks (LayerNorm,
    Linear, GELU) -> LayerNorm: the hidden state the vocabulary head reads."""

    def __init__(self, context, embed=24, hidden=128, blocks=2):
        super().__init__()
        self.embed = tn.nn.Embedding(len(ALPHABET), embed)
        self.inp = tn.nn.Linear(context * embed, hidden)
        self.blocks = tn.nn.ModuleList([
            tn.nn.Sequential(tn.nn.LayerNorm(hidden), tn.nn.Linear(hidden, hidden),
                             tn.nn.GELU())
            for _ in range(blocks)])
        self.norm = tn.nn.LayerNorm(hidden)
        self.head = tn.nn.Linear(hidden, len(ALPHABET))

    def hidden(self, idx):
        h = self.inp(self.embed(idx).flatten(1))        # (B, context * embed) -> (B, hidden)
        for block in self.blocks:
            h = h + block(h)
        return self.norm(h)

    def loss(self, idx, target):
        """Mean cross-entropy of the next letters, the head fused into the loss."""
        return F.linear_cross_entropy(self.hidden(idx), self.head.weight, target,
                                      self.head.bias)

    def forward(self, idx):
        """The next letter's logits (B, 27), for sampling."""
        return self.head(self.hidden(idx))


def param_groups(model, weight_decay):
    """Weight decay on matrices (embedding and linear weights), none on biases and norms."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def warmup_cosine(warmup, total):
    """The lr factor at each step: linear from 1/warmup up to 1, then a cosine down to 0."""
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return factor


def sample(model, context, n, device, max_len=20):
    """``n`` new names, drawn together letter by letter (one forward pass per letter)."""
    model.eval()
    windows = [[0] * context for _ in range(n)]
    names, done = [""] * n, [False] * n
    with tn.no_grad():
        for _ in range(max_len):
            probs = F.softmax(model(tn.tensor(windows, device=device)), dim=-1)
            letters = tn.multinomial(probs, 1).flatten().tolist()
            for i, c in enumerate(letters):
                if done[i]:
                    continue
                if c == 0:              # the end mark
                    done[i] = True
                else:
                    names[i] += ALPHABET[c]
                    windows[i] = windows[i][1:] + [c]
            if all(done):
                break
    model.train()
    return names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--context", type=int, default=4, help="letters the model sees")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100, help="steps of linear warmup")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--samples", type=int, default=12, help="new names to make up")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1 or args.context < 1 or args.samples < 0:
        p.error("--steps and --context must be >= 1, --samples >= 0")
    device = args.device
    if device == "auto":
        device = "cuda" if tn.cuda.is_available() else "cpu"

    tn.manual_seed(args.seed)
    names = load_names()
    order = np.random.default_rng(args.seed).permutation(len(names))
    n_val = len(names) // 10
    val_names = [names[i] for i in order[:n_val]]
    train_names = [names[i] for i in order[n_val:]]
    xs, ys = examples(train_names, args.context)
    xv, yv = examples(val_names, args.context)
    x_val, y_val = tn.tensor(xv, device=device), tn.tensor(yv, device=device)
    loader = tn.data.DataLoader(
        tn.data.TensorDataset(tn.tensor(xs, device=device), tn.tensor(ys, device=device)),
        batch_size=args.batch_size, shuffle=True, seed=args.seed)

    model = NamesModel(args.context).to(device)
    opt = tn.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr)
    sched = tn.optim.lr_scheduler.LambdaLR(
        opt, warmup_cosine(min(args.warmup, args.steps // 2), args.steps))
    print(f"{len(train_names)} names to learn from ({len(xs)} letters), {len(val_names)} to "
          f"validate on; {sum(p.numel() for p in model.parameters()):,} parameters on {device}; "
          f"a uniform guess scores {math.log(len(ALPHABET)):.3f}")

    began, step, report_every = time.perf_counter(), 0, max(1, args.steps // 5)
    loss_sum, batches = tn.zeros((), device=device), 0
    while step < args.steps:
        for xb, yb in loader:
            loss = model.loss(xb, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum, batches = loss_sum + loss.detach(), batches + 1
            if step % report_every == 0 or step == args.steps:
                model.eval()
                with tn.no_grad():
                    val = model.loss(x_val, y_val).item()
                model.train()
                print(f"step {step:>5}/{args.steps}: train loss {loss_sum.item() / batches:.3f}, "
                      f"validation loss {val:.3f}", flush=True)
                loss_sum, batches = tn.zeros((), device=device), 0
            if step == args.steps:
                break
    print(f"trained in {time.perf_counter() - began:.1f} s; {args.samples} new names:")
    made_up = sample(model, args.context, args.samples, device)
    print("  " + ", ".join(made_up))
    return val, made_up


if __name__ == "__main__":
    main()
