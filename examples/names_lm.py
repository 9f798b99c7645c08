"""A character-level language model of first names: it learns the 1990 US Census first names
and then makes up new ones.

Each name is read one letter at a time; from the previous ``--context`` letters the model
predicts the next one (a-z, or "." for the end of the name). Letters are embedded
(``nn.Embedding``), the context's embeddings joined and passed through a small stack with
LayerNorm and GELU, and the head and its loss are computed together by
``F.linear_cross_entropy``, which never holds the full logits. Sampling draws each next
letter with ``tn.multinomial`` from the softmax of the head's output.

    python examples/names_lm.py                 # device auto; about half a minute on 2 cores
    python examples/names_lm.py --steps 300 --samples 5
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn.datasets import load_names

END = "."
ALPHABET = END + "abcdefghijklmnopqrstuvwxyz"
STOI = {c: i for i, c in enumerate(ALPHABET)}


def examples(names, context):
    """(contexts, next letters): every position of every name, the start padded with END."""
    xs, ys = [], []
    for name in names:
        window = [0] * context
        for ch in name + END:
            xs.append(window)
            ys.append(STOI[ch])
            window = window[1:] + [STOI[ch]]
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)


class NamesModel(tn.nn.Module):
    """Embeddings of the context letters -> two residual GELU blocks with LayerNorm -> hidden
    states; the vocabulary head is a weight and a bias used by linear_cross_entropy."""

    def __init__(self, context, embed=24, hidden=128):
        super().__init__()
        self.embed = tn.nn.Embedding(len(ALPHABET), embed)
        self.inp = tn.nn.Linear(context * embed, hidden)
        self.blocks = tn.nn.ModuleList([
            tn.nn.Sequential(tn.nn.LayerNorm(hidden), tn.nn.Linear(hidden, hidden),
                             tn.nn.GELU())
            for _ in range(2)])
        self.norm = tn.nn.LayerNorm(hidden)
        self.head = tn.nn.Linear(hidden, len(ALPHABET))

    def hidden(self, idx):
        h = self.inp(self.embed(idx).flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.norm(h)

    def loss(self, idx, target):
        return F.linear_cross_entropy(self.hidden(idx), self.head.weight, target,
                                      self.head.bias)

    def logits(self, idx):
        return self.head(self.hidden(idx))


def sample(model, context, n, device):
    """``n`` new names, letter by letter."""
    model.eval()
    out = []
    with tn.no_grad():
        for _ in range(n):
            window, letters = [0] * context, []
            while len(letters) < 20:
                probs = F.softmax(model.logits(tn.tensor([window], device=device)), dim=-1)
                nxt = tn.multinomial(probs, 1).item()
                if nxt == 0:
                    break
                letters.append(ALPHABET[nxt])
                window = window[1:] + [nxt]
            out.append("".join(letters))
    model.train()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--context", type=int, default=4, help="letters the model sees")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--samples", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
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
    x_train, y_train = tn.tensor(xs, device=device), tn.tensor(ys, device=device)
    x_val, y_val = tn.tensor(xv, device=device), tn.tensor(yv, device=device)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x_train, y_train),
                                batch_size=args.batch_size, shuffle=True, seed=args.seed)

    model = NamesModel(args.context).to(device)
    opt = tn.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = tn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
    print(f"{len(train_names)} names to learn from ({len(xs)} letters), {len(val_names)} to "
          f"validate on; {sum(p.numel() for p in model.parameters()):,} parameters on {device}")

    began, step = time.perf_counter(), 0
    while step < args.steps:
        for xb, yb in loader:
            loss = model.loss(xb, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % max(1, args.steps // 5) == 0 or step == args.steps:
                with tn.no_grad():
                    model.eval()
                    val = model.loss(x_val, y_val).item()
                    model.train()
                print(f"step {step:>5}: train loss {loss.item():.3f}, validation loss {val:.3f}")
            if step == args.steps:
                break
    print(f"trained in {time.perf_counter() - began:.1f} s; new names:")
    names_made = sample(model, args.context, args.samples, device)
    print("  " + ", ".join(names_made))
    return val, names_made


if __name__ == "__main__":
    main()
