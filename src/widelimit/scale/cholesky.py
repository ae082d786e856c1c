"""Out-of-core blocked Cholesky solve of ``(K + σ²I) α = y`` from a stored kernel.

Left-looking tile Cholesky (Golub & Van Loan 2013, Alg. 4.2.2 in block
form): for each tile column ``j``, with ``t``-row tiles and ``L`` written to a
scratch Zarr array with the store's tiling::

    L_jj = chol(K_jj + σ²I − Σ_{m<j} L_jm L_jmᵀ)
    L_ij = (K_ij − Σ_{m<j} L_im L_jmᵀ) L_jj⁻ᵀ            (i > j)

then forward/backward substitution over tile rows (``L z = y``, ``Lᵀ α = z``).
Memory: two row panels ``(t, N)`` and the right-hand sides, never the
``(N, N)`` matrix; ``N³/3`` flops.  Exact to rounding where CG would need many
iterations (small ``σ²``, e.g. the NTK mean at long training times).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.linalg as sla
import zarr

from widelimit.scale.read import KernelArray

__all__ = ["blocked_cholesky_solve"]


def blocked_cholesky_solve(
    k: KernelArray, noise: float, y: np.ndarray, *, scratch_dir: str | Path | None = None
) -> np.ndarray:
    """``(K + noise·I)⁻¹ y`` for a symmetric stored ``K`` (``y``: ``(N, r)``), out of core.

    ``scratch_dir``: where the ``L`` factor is written (default: beside the
    store); removed afterwards.
    """
    plan = k._plan
    if not plan.symmetric:
        raise ValueError("blocked Cholesky needs a symmetric store (compute_kernel(net, x_train))")
    n, t = plan.n1, plan.tile
    nt = plan.grid[0]
    parent = Path(scratch_dir) if scratch_dir is not None else k._store.path.parent
    tmp = Path(tempfile.mkdtemp(prefix=".cholesky-", dir=parent))
    try:
        lz = zarr.create_array(
            str(tmp / "L.zarr"), shape=(n, n), chunks=(t, t), dtype="float64",
            compressors=None, fill_value=0.0,
        )  # fmt: skip

        def rng(i: int) -> slice:
            return slice(i * t, min((i + 1) * t, n))

        for j in range(nt):
            pj = lz[rng(j), : j * t] if j else None  # row panel L_j,<j
            a = k.block(rng(j).start, rng(j).stop, rng(j).start, rng(j).stop)
            a[np.diag_indices_from(a)] += noise
            if pj is not None:
                a -= pj @ pj.T
            try:
                ljj = sla.cholesky(a, lower=True)
            except np.linalg.LinAlgError as err:
                raise ValueError(
                    f"K + σ²I is not numerically positive definite (tile column {j}); "
                    "increase diag_reg"
                ) from err
            lz[rng(j), rng(j)] = ljj
            for i in range(j + 1, nt):
                aij = k.block(rng(i).start, rng(i).stop, rng(j).start, rng(j).stop)
                if pj is not None:
                    aij -= lz[rng(i), : j * t] @ pj.T
                lz[rng(i), rng(j)] = sla.solve_triangular(ljj, aij.T, lower=True).T
        # L z = y (forward), then Lᵀ α = z (backward), one tile row at a time
        z = np.array(y, dtype=np.float64, copy=True)
        for i in range(nt):
            if i:
                z[rng(i)] -= lz[rng(i), : i * t] @ z[: i * t]
            z[rng(i)] = sla.solve_triangular(lz[rng(i), rng(i)], z[rng(i)], lower=True)
        for i in reversed(range(nt)):
            if i < nt - 1:
                z[rng(i)] -= lz[(i + 1) * t :, rng(i)].T @ z[(i + 1) * t :]
            z[rng(i)] = sla.solve_triangular(lz[rng(i), rng(i)], z[rng(i)], lower=True, trans="T")
        return z
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
