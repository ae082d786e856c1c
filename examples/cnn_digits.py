"""A convolutional kernel on small images: scikit-learn's 8×8 digits.

Shows: the infinite-width NNGP and NTK of a two-layer CNN with global average pooling, and of
a fully connected net, on images given as an ``(N, C, H, W)`` array; test accuracy of the
kernel predictors (infinitely many channels, trained to convergence, ``t = ∞``) with its
binomial standard error. Small data (150 training images): accuracies are indicative, not a
benchmark. Saves ``cnn_digits.png`` (a few test images with their predicted labels).

Run: ``python examples/cnn_digits.py [OUT_DIR]`` (figures go to ``OUT_DIR``, else
``$WIDELIMIT_EXAMPLES_DIR``, else ``./widelimit-examples/``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files; no window
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

from widelimit import (
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool,
    ReLU,
    gradient_descent_mse_ensemble,
    serial,
)

out_dir = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("WIDELIMIT_EXAMPLES_DIR", "widelimit-examples")
)
out_dir.mkdir(parents=True, exist_ok=True)

digits = load_digits()  # 1797 images, 8×8, grey levels 0..16
rng = np.random.default_rng(0)
idx = rng.permutation(len(digits.target))
n_train, n_test = 150, 150
images = digits.images / 16.0
images = (images - images.mean()) / images.std()  # zero mean, unit variance per pixel on average
x = torch.as_tensor(images[:, None], dtype=torch.float64)  # (N, 1, 8, 8): NCHW
labels = torch.as_tensor(digits.target)
tr, te = idx[:n_train], idx[n_train : n_train + n_test]
x_train, x_test = x[tr], x[te]
y_train = torch.nn.functional.one_hot(labels[tr], 10).double() - 0.1  # one-hot minus 1/10
labels_test = labels[te]

cnn = serial(
    Conv2d(64, 3, w_std=1.4, b_std=0.1),
    ReLU(),
    Conv2d(64, 3, w_std=1.4, b_std=0.1),
    ReLU(),
    GlobalAvgPool(),
    Dense(10, w_std=1.4),
)
fc = serial(Flatten(), Dense(512, w_std=1.4, b_std=0.1), ReLU(), Dense(10, w_std=1.4))

results = {}
for name, net in [("CNN + global average pooling", cnn), ("fully connected", fc)]:
    start = time.perf_counter()
    ens = gradient_descent_mse_ensemble(net, x_train, y_train, diag_reg=1e-4)
    for kernel in ("nngp", "ntk"):
        pred = ens(x_test, t=None, kernel=kernel).mean.argmax(1)
        acc = float((pred == labels_test).double().mean())
        sem = (acc * (1 - acc) / n_test) ** 0.5
        results[name, kernel] = (acc, sem, pred)
    seconds = time.perf_counter() - start
    for kernel in ("nngp", "ntk"):
        acc, sem, _ = results[name, kernel]
        print(f"{name:29s} {kernel.upper():4s} test accuracy {acc:.3f} ± {sem:.3f}")
    print(f"  ({n_train} training / {n_test} test images, kernels in {seconds:.1f} s)")

acc_cnn = results["CNN + global average pooling", "ntk"][0]
acc_fc = results["fully connected", "ntk"][0]
print(
    f"the CNN's NTK classifies {100 * acc_cnn:.0f}% of the test digits correctly "
    f"(fully connected: {100 * acc_fc:.0f}%)"
)

pred = results["CNN + global average pooling", "ntk"][2]
fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
for ax, i in zip(axes.flat, range(16), strict=True):
    ax.imshow(digits.images[te[i]], cmap="gray_r")
    ok = int(pred[i]) == int(labels_test[i])
    ax.set_title(f"{int(pred[i])}", color="k" if ok else "r", fontsize=9)
    ax.axis("off")
fig.suptitle("CNN NTK predictions (red: wrong)", fontsize=10)
fig.tight_layout()
path = out_dir / "cnn_digits.png"
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")
