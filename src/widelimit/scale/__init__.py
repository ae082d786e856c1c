"""Scale: tiled, resumable kernels on Dask with Zarr storage, and large-N inference.

* :func:`compute_kernel` — NNGP/NTK in tiles into a Zarr store; resumes after a kill.
* :func:`plan_kernel` — tiles, disk, memory and an ETA of a job before it runs.
* :func:`load_kernel` — open a store; ``.nngp[r0:r1, c0:c1]`` reads blocks.
* :func:`posterior_mean` — GP posterior mean from a stored kernel without loading
  it whole (preconditioned conjugate gradients over row blocks), or from a kernel in
  memory (Cholesky, or PCG with a pivoted-Cholesky preconditioner).
"""

from widelimit.scale.compute import RunStats, compute_kernel
from widelimit.scale.lock import StoreLockedError
from widelimit.scale.plan import KernelPlan, MemoryEstimate, estimate_memory, plan_kernel
from widelimit.scale.read import KernelArray, StoredKernel, StoreInfo, load_kernel, verify_store
from widelimit.scale.solve import NotConvergedError, PosteriorMean, StoredOperator, posterior_mean
from widelimit.scale.store import StoreCorruptError, StoreMismatchError
from widelimit.scale.tiles import Tile, TilePlan, tile_plan

__all__ = [
    "KernelArray",
    "KernelPlan",
    "MemoryEstimate",
    "NotConvergedError",
    "PosteriorMean",
    "RunStats",
    "StoreCorruptError",
    "StoreInfo",
    "StoreLockedError",
    "StoreMismatchError",
    "StoredKernel",
    "StoredOperator",
    "Tile",
    "TilePlan",
    "compute_kernel",
    "estimate_memory",
    "load_kernel",
    "plan_kernel",
    "posterior_mean",
    "tile_plan",
    "verify_store",
]
