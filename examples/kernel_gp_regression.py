"""Kernel of your own data and a Gaussian-process prediction with uncertainty.

Shows: the infinite-width NNGP of a small ReLU network on a NumPy array of your own (here a
noisy 1-D curve, generated), used as a GP prior: posterior mean and standard deviation on
test points, the test RMSE and how often the ±2σ predictive band covers new noisy
measurements (≈ 95% if the model is calibrated). Saves ``gp_regression.png``.

Run: ``python examples/kernel_gp_regression.py [OUT_DIR]`` (figures go to ``OUT_DIR``, else
``$WIDELIMIT_EXAMPLES_DIR``, else ``./widelimit-examples/``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files; no window
import matplotlib.pyplot as plt
import numpy as np
import torch

from widelimit import Dense, Erf, ReLU, gp_inference, serial

out_dir = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("WIDELIMIT_EXAMPLES_DIR", "widelimit-examples")
)
out_dir.mkdir(parents=True, exist_ok=True)

# Your data: any (N, d) float array. Here y = sin(3x) + noise on [-2, 2].
rng = np.random.default_rng(0)
noise_std = 0.1
x_train = rng.uniform(-2, 2, size=(40, 1))
y_train = np.sin(3 * x_train[:, 0]) + noise_std * rng.standard_normal(40)
x_test = np.linspace(-2.5, 2.5, 200)[:, None]
y_test = np.sin(3 * x_test[:, 0])
y_test_noisy = y_test + noise_std * rng.standard_normal(200)  # what a new measurement gives

# The infinite-width network: its NNGP is the GP prior. The input kernel is x·x'/d, so a
# bias (b_std) is what lets a 1-D input see more than its sign and size.
net = serial(
    Dense(512, w_std=1.5, b_std=1.0), Erf(), Dense(512, w_std=1.5, b_std=0.5), ReLU(), Dense(1)
)
xt = torch.as_tensor(x_train, dtype=torch.float64)
xs = torch.as_tensor(x_test, dtype=torch.float64)
k_train = net.kernel(xt, get="nngp").nngp  # (40, 40)
k_cross = net.kernel(xs, xt, get="nngp").nngp  # (200, 40)
k_test = net.kernel(xs, get="nngp").nngp  # (200, 200)

# A GP with observation noise σ² = noise_std² (absolute, not relative to the kernel's diagonal).
# The prior scale is fitted by maximum likelihood over a grid: the NNGP fixes the shape of the
# covariance, the amplitude of your targets is yours.
y = torch.as_tensor(y_train, dtype=torch.float64)


def log_evidence(scale: float) -> float:
    cov = scale * k_train + noise_std**2 * torch.eye(len(y), dtype=torch.float64)
    return float(torch.distributions.MultivariateNormal(torch.zeros_like(y), cov).log_prob(y))


scales = np.geomspace(0.01, 100, 41)
scale = float(scales[np.argmax([log_evidence(s) for s in scales])])
post = gp_inference(
    scale * k_train,
    y,
    scale * k_cross,
    scale * k_test,
    diag_reg=noise_std**2,
    diag_reg_absolute=True,
)
mean = post.mean.numpy()
std = np.sqrt(np.clip(np.diag(post.cov.numpy()), 0, None) + noise_std**2)  # predictive std

inside = np.abs(x_test[:, 0]) <= 2  # where there is training data
rmse = float(np.sqrt(np.mean((mean[inside] - y_test[inside]) ** 2)))
covered = float(np.mean(np.abs(mean[inside] - y_test_noisy[inside]) <= 2 * std[inside]))
print(f"prior scale fitted by maximum likelihood: {scale:.3g}")
print(
    f"test RMSE {rmse:.3f} on [-2, 2] (noise std {noise_std}); "
    f"±2σ covers {100 * covered:.0f}% of noisy test points (≈95% if calibrated)"
)
print(
    f"predictive std grows outside the data: {std[inside].mean():.3f} inside [-2, 2], "
    f"{std[~inside].mean():.3f} beyond"
)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.fill_between(x_test[:, 0], mean - 2 * std, mean + 2 * std, alpha=0.3, label="±2σ")
ax.plot(x_test[:, 0], mean, label="NNGP posterior mean")
ax.plot(x_test[:, 0], y_test, "k--", lw=1, label="truth sin(3x)")
ax.plot(x_train[:, 0], y_train, "o", ms=3, label="training data")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend(fontsize=8)
fig.tight_layout()
path = out_dir / "gp_regression.png"
fig.savefig(path, dpi=100)
print(f"figure saved to {path}")
