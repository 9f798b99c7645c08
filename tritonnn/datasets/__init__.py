"""Small real data sets shipped inside the package.

``digits.csv.gz``: the UCI "Optical Recognition of Handwritten Digits" test set
(E. Alpaydin and C. Kaynak, 1998; 1,797 8x8 images of digits 0-9 with pixel
counts 0..16), licensed CC BY 4.0, in the form scikit-learn ships it
(``sklearn/datasets/data/digits.csv.gz``): one row per image, 64 pixel values
then the label. See DIGITS_LICENSE.md beside this file.

``names.txt.gz``: the 5,163 distinct first names of the 1990 US Census lists (public
domain), lowercased, one per line, for character-level language models. See
NAMES_LICENSE.md beside this file.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

_HERE = os.path.dirname(__file__)


def load_digits():
    """``(images, labels)``: float32 (1797, 64) scaled to [0, 1] and int64 (1797,)."""
    with gzip.open(os.path.join(_HERE, "digits.csv.gz"), "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return raw[:, :64] / np.float32(16.0), raw[:, 64].astype(np.int64)


def train_test_split(n, test_fraction, seed):
    """Index arrays of a seeded random split of ``n`` samples."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return order[n_test:], order[:n_test]


def load_names():
    """The first names (lowercase ``str``, sorted), 2 to 11 letters a-z."""
    with gzip.open(os.path.join(_HERE, "names.txt.gz"), "rt") as f:
        return [line.strip() for line in f if line.strip()]
