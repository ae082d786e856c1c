"""scikit-learn estimators: the sklearn contract and agreement with dense formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from widelimit import Dense, ReLU, serial
from widelimit.datasets import load_digits
from widelimit.estimators import NNGPClassifier, NNGPRegressor, NTKClassifier, NTKRegressor

torch.set_num_threads(1)
SMALL = "Dense(8, w_std=1.3, b_std=0.1) -> ReLU -> Dense(1)"


# One regressor and one classifier by default; the other two share their base
# classes (only the kernel differs) and run with the slow tests.
@parametrize_with_checks([NNGPRegressor(SMALL), NTKClassifier(SMALL)])
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks([NTKRegressor(SMALL), NNGPClassifier(SMALL)])
def test_sklearn_contract_other_kernel(estimator, check):
    check(estimator)


def _data(seed=0):
    g = np.random.default_rng(seed)
    x = g.normal(size=(30, 3))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
    return x[:20], y[:20], x[20:], y[20:]


def test_nngp_regressor_matches_dense_posterior():
    xtr, ytr, xte, _ = _data()
    net = serial(Dense(8, w_std=1.3, b_std=0.1), ReLU(), Dense(1))
    k = net.kernel(torch.tensor(np.vstack([xtr, xte])), get=("nngp",)).nngp.numpy()
    reg = 1e-2
    kxx = k[:20, :20] + reg * np.mean(np.diag(k[:20, :20])) * np.eye(20)
    mean = k[20:, :20] @ np.linalg.solve(kxx, ytr)
    cov = k[20:, 20:] - k[20:, :20] @ np.linalg.solve(kxx, k[:20, 20:])
    est = NNGPRegressor(net, diag_reg=reg).fit(xtr, ytr)
    m, s = est.predict(xte, return_std=True)
    np.testing.assert_allclose(m, mean, rtol=1e-9)
    np.testing.assert_allclose(s, np.sqrt(np.diag(cov)), rtol=1e-7)
    _, c2 = est.predict(xte, return_cov=True)
    np.testing.assert_allclose(c2, cov, rtol=1e-7, atol=1e-12)
    assert est.score(xte, mean) == pytest.approx(1.0)


def test_ntk_regressor_time_and_multi_output():
    xtr, ytr, xte, _ = _data()
    y2 = np.stack([ytr, -ytr], 1)
    at0 = NTKRegressor(SMALL, t=0.0).fit(xtr, y2).predict(xte)
    np.testing.assert_allclose(at0, 0.0, atol=1e-12)  # ensemble mean starts at 0
    inf = NTKRegressor(SMALL).fit(xtr, y2).predict(xte)
    assert inf.shape == (10, 2)
    np.testing.assert_allclose(inf[:, 0], -inf[:, 1], rtol=1e-10)  # linear in the targets
    single = NTKRegressor(SMALL).fit(xtr, ytr).predict(xte)
    np.testing.assert_allclose(single, inf[:, 0], rtol=1e-10)
    assert clone(NTKRegressor(SMALL, t=3.0)).get_params()["t"] == 3.0
    with pytest.raises(ValueError, match="`t`"):
        NTKRegressor(SMALL, t=-1.0).fit(xtr, ytr)
    with pytest.raises(ValueError, match="diag_reg"):
        NTKRegressor(SMALL, diag_reg=-1.0).fit(xtr, ytr)
    with pytest.raises(TypeError, match="net"):
        NTKRegressor(net=3).fit(xtr, ytr)


@pytest.mark.parametrize("cls", [NNGPClassifier, NTKClassifier])
def test_classifier_on_digits(cls):
    d = load_digits(200, 200, seed=1)
    clf = cls(diag_reg=1e-3).fit(d.x_train.numpy(), d.labels_train.numpy())
    # chance is 0.1; kernel methods with 200 training digits reach ~0.9
    assert clf.score(d.x_test.numpy(), d.labels_test.numpy()) > 0.85
    assert clf.decision_function(d.x_test.numpy()[:3]).shape == (3, 10)
    labels = np.array(["a", "b"])[(d.labels_train.numpy() > 4).astype(int)]
    binary = cls(diag_reg=1e-3).fit(d.x_train.numpy(), labels)
    assert set(binary.predict(d.x_test.numpy())) <= {"a", "b"}
    assert binary.decision_function(d.x_test.numpy()[:3]).shape == (3,)
