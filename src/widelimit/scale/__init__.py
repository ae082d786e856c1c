"""Scale: tiled, resumable kernels on Dask with Zarr storage, and large-N inference.

* :func:`compute_kernel` — NNGP/NTK in tiles into a Zarr store; resumes after a kill.
* :func:`plan_kernel` — tiles, disk, memory and an ETA of a job before it runs.
* :func:`load_kernel` — open a store; ``.nngp[r0:r1, c0:c1]`` reads blocks.
* :func:`posterior_mean` — GP posterior mean from a stored kernel without loading
  it whole (preconditioned conjugate gradients over row blocks), or from a kernel in
  memory (Cholesky, or PCG with a pivoted-Cholesky preconditioner).
"""

from widelimit._lazy import lazy_exports

#: Where each public name lives, imported on first use (``widelimit._lazy``): planning a job
#: (``plan_kernel``) does not load Zarr, Dask or SciPy.
_LAZY = {
    **dict.fromkeys(("RunStats", "compute_kernel"), "widelimit.scale.compute"),
    "StoreLockedError": "widelimit.scale.lock",
    **dict.fromkeys(
        ("KernelPlan", "MemoryEstimate", "estimate_memory", "plan_kernel"), "widelimit.scale.plan"
    ),
    **dict.fromkeys(
        ("KernelArray", "StoredKernel", "StoreInfo", "load_kernel", "verify_store"),
        "widelimit.scale.read",
    ),
    **dict.fromkeys(
        ("NotConvergedError", "PosteriorMean", "StoredOperator", "posterior_mean"),
        "widelimit.scale.solve",
    ),
    **dict.fromkeys(("StoreCorruptError", "StoreMismatchError"), "widelimit.scale.store"),
    **dict.fromkeys(("Tile", "TilePlan", "tile_plan"), "widelimit.scale.tiles"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

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
