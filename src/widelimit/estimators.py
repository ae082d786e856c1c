"""scikit-learn estimators backed by infinite-width kernels.

* :class:`NNGPRegressor` — Bayesian posterior of the infinite-width network
  (NNGP), ``kernel="nngp"``, ``t = ∞`` by default;
* :class:`NTKRegressor` — mean (and covariance) of an infinite ensemble of
  infinite-width networks trained by gradient flow on MSE, ``kernel="ntk"``;
* :class:`NNGPClassifier`, :class:`NTKClassifier` — one-hot regression
  (targets one-hot minus ``1/n_classes``), class = ``argmax`` of the mean.

Conventions are those of :mod:`widelimit.predict` (time ``t`` of gradient flow
with loss ``½·mean (f − y)²``; ``diag_reg`` relative to ``mean(diag K)``, default
:data:`~widelimit.predict.DIAG_REG`).  The
network is a spec (:class:`~widelimit.layers.base.Layer`) or a text description
(``"Dense(512, w_std=1.5) -> ReLU -> Dense(1)"``); inputs are used as given (no
hidden rescaling; the input kernel is ``x·x'/d``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from widelimit.predict import DIAG_REG, gradient_descent_mse_ensemble
from widelimit.spec_text import DEFAULT_NET

__all__ = ["DEFAULT_NET", "NNGPClassifier", "NNGPRegressor", "NTKClassifier", "NTKRegressor"]


def _resolve_net(net: object):
    from widelimit.layers.base import Layer
    from widelimit.spec_text import load_net

    if net is None:
        return load_net(DEFAULT_NET)
    if isinstance(net, str):
        return load_net(net)
    if isinstance(net, Layer):
        return net
    raise TypeError(f"`net` must be a Layer, a net description string or None; got {type(net)}")


class _KernelBase(BaseEstimator):
    _kernel = "ntk"

    def __init__(
        self,
        net: object = None,
        *,
        t: float | None = None,
        diag_reg: float = DIAG_REG,
        diag_reg_absolute: bool = False,
    ) -> None:
        self.net = net
        self.t = t
        self.diag_reg = diag_reg
        self.diag_reg_absolute = diag_reg_absolute

    def _fit_targets(self, X, y2d: np.ndarray):
        if self.t is not None and (not isinstance(self.t, int | float) or self.t < 0):
            raise ValueError(f"`t` must be None (= ∞) or a number >= 0; got {self.t!r}")
        self.net_ = _resolve_net(self.net)
        self.predictor_ = gradient_descent_mse_ensemble(
            self.net_,
            torch.tensor(np.array(X, dtype=np.float64)),
            torch.tensor(np.array(y2d, dtype=np.float64)),
            diag_reg=self.diag_reg,
            diag_reg_absolute=self.diag_reg_absolute,
        )

    def _predict(self, X, cov: bool):
        check_is_fitted(self, "predictor_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        t = math.inf if self.t is None else float(self.t)
        out = self.predictor_(torch.tensor(np.array(X)), t, kernel=self._kernel, compute_cov=cov)
        return out.mean.numpy(), None if out.cov is None else out.cov.numpy()


class _RegressorBase(RegressorMixin, _KernelBase):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """Fit on ``X (N, d)`` and ``y (N,)`` or ``(N, k)``; returns ``self``."""
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self._y_1d = y.ndim == 1
        self._fit_targets(X, y.reshape(len(y), -1))
        return self

    def predict(self, X, return_std: bool = False, return_cov: bool = False):
        """Mean ``(M,)`` or ``(M, k)``; optionally std ``(M,)`` or covariance ``(M, M)``.

        The covariance is the same for every output column (kernels are traced
        over outputs), so ``std``/``cov`` do not carry an output axis.
        """
        if return_std and return_cov:
            raise ValueError("at most one of `return_std` and `return_cov` may be True")
        mean, cov = self._predict(X, return_std or return_cov)
        if self._y_1d:
            mean = mean[:, 0]
        if return_cov:
            return mean, cov
        if return_std:
            return mean, np.sqrt(np.clip(np.diag(cov), 0.0, None))
        return mean


class NNGPRegressor(_RegressorBase):
    """GP regression with the NNGP kernel of ``net`` (``t=None``: exact posterior).

    Args:
        net: network spec or description (default: 2-hidden-layer ReLU MLP).
        t: gradient-flow time of readout-only training (``None`` = ∞ = posterior).
        diag_reg: observation-noise variance relative to ``mean(diag K)``.
        diag_reg_absolute: interpret ``diag_reg`` as an absolute variance.
    """

    _kernel = "nngp"


class NTKRegressor(_RegressorBase):
    """Infinite ensemble of infinite-width nets trained by gradient flow (NTK).

    Args as :class:`NNGPRegressor`; ``t`` is the training time (``None`` = ∞).
    """

    _kernel = "ntk"


class _ClassifierBase(ClassifierMixin, _KernelBase):
    def fit(self, X, y):
        """Fit on ``X (N, d)`` and class labels ``y (N,)``; returns ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        k = len(self.classes_)
        codes = self._encoder.transform(y)
        targets = np.eye(max(k, 2))[codes] - 1.0 / max(k, 2)  # one-hot − 1/k (Lee et al. 2018)
        self._fit_targets(X, targets)
        return self

    def decision_function(self, X):
        """Outputs: ``(M,)`` for two classes (``classes_[1]`` positive), else ``(M, k)``."""
        mean, _ = self._predict(X, False)
        if len(self.classes_) == 2:
            return mean[:, 1] - mean[:, 0]
        return mean

    def predict(self, X):
        """Class labels ``(M,)``: ``argmax`` of the one-hot regression."""
        mean, _ = self._predict(X, False)
        if len(self.classes_) == 1:
            return np.full(len(mean), self.classes_[0])
        return self.classes_[np.argmax(mean[:, : len(self.classes_)], axis=1)]


class NNGPClassifier(_ClassifierBase):
    """Classification by NNGP regression on one-hot targets (Lee et al. 2018)."""

    _kernel = "nngp"


class NTKClassifier(_ClassifierBase):
    """Classification by NTK gradient-flow regression on one-hot targets."""

    _kernel = "ntk"
