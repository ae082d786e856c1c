"""A kernel store computed on a local Dask cluster, and the GP posterior mean from it.

Shows: ``widelimit.scale.compute_kernel`` writing the train–train and test–train NNGP of your
data in tiles into Zarr stores, the tiles computed by a ``distributed.LocalCluster`` (2 worker
processes, 1 thread each; any ``distributed.Client`` or ``"tcp://host:8786"`` works the same),
then ``posterior_mean`` solving the GP over the stored tiles. The data are scikit-learn's
generated Friedman #1 regression problem (N = 400 training, 200 test points, 10 features).
Checks the store against the in-memory kernel and the stored-tile solution against an exact
in-memory GP solve. Re-running resumes: finished tiles are skipped. Saves ``dask_store.png``
(predicted vs true targets) and the stores themselves next to it.

Run: ``python examples/dask_store.py [OUT_DIR]`` (outputs go to ``OUT_DIR``, else
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
from distributed import Client, LocalCluster
from sklearn.datasets import make_friedman1

from widelimit import Dense, ReLU, gp_inference, load_kernel, serial
from widelimit.scale import compute_kernel, posterior_mean

out_dir = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("WIDELIMIT_EXAMPLES_DIR", "widelimit-examples")
)
out_dir.mkdir(parents=True, exist_ok=True)


def main() -> None:
    x, y = make_friedman1(n_samples=600, n_features=10, noise=0.5, random_state=0)
    x = (x - x.mean(0)) / x.std(0)  # standardised features: the input kernel is x·x'/d
    y_mean, y_std = y[:400].mean(), y[:400].std()
    y = (y - y_mean) / y_std
    x_train, y_train, x_test, y_test = x[:400], y[:400], x[400:], y[400:]
    net = serial(Dense(512, w_std=1.5, b_std=0.5), ReLU(), Dense(512, w_std=1.5), ReLU(), Dense(1))

    # 2 worker processes with 1 thread each; no dashboard (no port to open).
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            train = compute_kernel(
                net, x_train, store=out_dir / "train.zarr", tile=100, scheduler=client
            )
            test = compute_kernel(
                net, x_test, x_train, store=out_dir / "test.zarr", tile=100, scheduler=client
            )
    print(
        f"stores written by the Dask cluster: {out_dir / 'train.zarr'} "
        f"({train.run.tiles_computed} tiles computed, {train.run.tiles_skipped} resumed), "
        f"{out_dir / 'test.zarr'} ({test.run.tiles_computed} computed, "
        f"{test.run.tiles_skipped} resumed)"
    )

    diag_reg = 0.1  # noise variance relative to mean(diag K)
    mu = posterior_mean(
        out_dir / "train.zarr", y_train, test_store=out_dir / "test.zarr", diag_reg=diag_reg
    ).mean
    mu = np.asarray(mu).reshape(-1)

    # The same GP in memory, as an independent check of the tiles and of the iterative solve.
    xt = torch.as_tensor(x_train)
    k_train = net.kernel(xt, get="nngp").nngp
    k_cross = net.kernel(torch.as_tensor(x_test), xt, get="nngp").nngp
    stored = torch.as_tensor(np.asarray(load_kernel(out_dir / "train.zarr").nngp[:]))
    exact = gp_inference(k_train, torch.as_tensor(y_train), k_cross, diag_reg=diag_reg).mean
    tile_err = float((stored - k_train).abs().max() / k_train.abs().max())
    solve_err = float(np.abs(mu - exact.numpy().reshape(-1)).max())

    rmse = float(np.sqrt(np.mean((mu - y_test) ** 2)))
    print(
        f"test RMSE {rmse:.3f} in units of the target's std "
        f"(predicting the mean gives {float(np.sqrt(np.mean(y_test**2))):.3f})"
    )
    print(
        f"the stored kernel equals the in-memory kernel to {tile_err:.1e} (relative) and the "
        f"posterior mean over stored tiles equals the exact in-memory solve to {solve_err:.1e}"
    )

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(y_test, mu, "o", ms=3)
    lo, hi = float(y_test.min()), float(y_test.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("true target (standardised)")
    ax.set_ylabel("posterior mean from the store")
    ax.set_title(f"Dask-computed NNGP store, RMSE {rmse:.2f}")
    fig.tight_layout()
    path = out_dir / "dask_store.png"
    fig.savefig(path, dpi=100)
    print(f"figure saved to {path}")


if __name__ == "__main__":  # the cluster's worker processes import this file: guard the work
    main()
