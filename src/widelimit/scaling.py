"""Input scaling of the command line (``--scale``): fitted on the training inputs only.

The scikit-learn convention: the statistics are *fitted* on ``x1`` (the
training inputs) and the same transform is *applied* to ``x1`` and ``x2``.
Fitting each input on itself would give every input set its own coordinates
(a single test row standardized by its own statistics becomes all zeros) and a
wrong cross kernel.

* ``"none"``: inputs unchanged.
* ``"standardize"``: every feature (every entry of the flattened per-example
  input) to mean 0 and standard deviation 1 over the rows of ``x1``
  (:class:`sklearn.preprocessing.StandardScaler`; a constant feature is only
  centred).
* ``"unit-norm"``: every row to Euclidean norm ``√d`` (``d`` features), so the
  input kernel's diagonal is 1 at ``w_std = 1``; per row, nothing is fitted.

A kernel store made by ``widelimit kernel --store`` records the fitted scaling
(:func:`save_scaling`), so a test-train store can be made with the training
statistics: ``widelimit kernel --x1 TEST --x2 TRAIN --scale-from TRAIN_STORE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SCALINGS", "InputScaling", "load_scaling", "save_scaling"]

SCALINGS = ("none", "standardize", "unit-norm")
_ATTR = "widelimit_scaling"  # key in the store's Zarr attributes, beside the metadata


@dataclass(frozen=True)
class InputScaling:
    """A fitted input scaling: ``method``, and ``mean``, ``scale`` ``(d,)`` for standardize."""

    method: str
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None

    @classmethod
    def fit(cls, method: str, x1: np.ndarray) -> InputScaling:
        """Fit ``method`` on the training inputs ``x1`` ``(N, ...)`` (flattened per row)."""
        if method not in SCALINGS:
            raise ValueError(f"`scale` must be one of {' | '.join(SCALINGS)}; got {method!r}")
        if method != "standardize":
            return cls(method)
        from sklearn.preprocessing import StandardScaler

        sc = StandardScaler().fit(np.asarray(x1, dtype=np.float64).reshape(len(x1), -1))
        return cls(method, tuple(map(float, sc.mean_)), tuple(map(float, sc.scale_)))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted scaling to ``x`` ``(M, ...)``; returns float64 of the same shape."""
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(len(x), -1)
        if self.method == "standardize":
            assert self.mean is not None and self.scale is not None
            if flat.shape[1] != len(self.mean):
                raise ValueError(
                    f"the scaling was fitted on {len(self.mean)} features per example; these "
                    f"inputs have {flat.shape[1]}"
                )
            flat = (flat - np.asarray(self.mean)) / np.asarray(self.scale)
        elif self.method == "unit-norm":
            nrm = np.linalg.norm(flat, axis=1, keepdims=True)
            flat = flat / np.where(nrm > 0, nrm, 1.0) * np.sqrt(flat.shape[1])
        return flat.reshape(x.shape)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputScaling:
        mean, scale = d.get("mean"), d.get("scale")
        return cls(
            str(d["method"]),
            None if mean is None else tuple(map(float, mean)),
            None if scale is None else tuple(map(float, scale)),
        )


def save_scaling(store: str | os.PathLike, scaling: InputScaling) -> None:
    """Record ``scaling`` in the attributes of the kernel store ``store``."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    group.attrs[_ATTR] = scaling.to_json()


def load_scaling(store: str | os.PathLike) -> InputScaling:
    """The scaling recorded in ``store``; ``ValueError`` if it is not a store or has none."""
    from widelimit.scale.store import KernelStore

    ks = KernelStore.open(store)  # FileNotFoundError / StoreCorruptError name the problem
    info = dict(ks.group.attrs).get(_ATTR)
    if not isinstance(info, dict):
        raise ValueError(
            f"store {str(store)!r} records no input scaling (it was made before scaling was "
            "recorded, or from Python); re-make it with `widelimit kernel --store ... --scale "
            "...`, or give the same --scale here if no statistics are fitted"
        )
    return InputScaling.from_json(info)
