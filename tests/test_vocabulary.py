"""The vocabulary of docs/conventions.md: deprecation helpers, old names, σ conversions, signatures.

* the helpers (``renamed_kwargs``, ``deprecated_attribute``, ``deprecated_function``,
  ``as_generator``) behave as documented;
* every deprecated spelling still works, warns (``DeprecationWarning`` naming the old
  spelling) and gives the same result as the new one;
* σ are standard deviations: results checked against closed forms written here (ReLU,
  tanh, erf), not against the code's own variance path only;
* no public callable still takes ``sigma_w``, ``act``, ``phi``, ``generator`` … except
  through a deprecated alias.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
import warnings

import numpy as np
import pytest
import torch

import widelimit
from widelimit.deprecation import (
    deprecated_attribute,
    deprecated_function,
    renamed_kwargs,
    sqrt_variance,
)
from widelimit.layers import Dense, Erf, Multiply, ReLU, Scale, Tanh, serial
from widelimit.seeding import as_generator

F64 = torch.float64


def _same(a, b) -> None:
    """Equal results (tensors, arrays, dataclasses of them, tuples, floats)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b)
        for f in a.__dataclass_fields__:
            _same(getattr(a, f), getattr(b, f))
    elif isinstance(a, tuple | list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


# ------------------------------------------------------------------ the helpers


@renamed_kwargs(old="new", var=("std", math.sqrt))
def _f(x, new=1.0, *, std=0.0):
    return x, new, std


def test_renamed_kwargs_maps_warns_and_converts():
    with pytest.warns(DeprecationWarning, match=r"`old=` of _f\(\).*use `new=`"):
        assert _f(0, old=5.0) == (0, 5.0, 0.0)
    with pytest.warns(DeprecationWarning, match="`var=`"):
        assert _f(0, var=4.0) == (0, 1.0, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _f(0, 3.0, std=1.5) == (0, 3.0, 1.5)  # new names: no warning
    with pytest.raises(TypeError, match="both `old`"):
        _f(0, old=1.0, new=2.0)
    assert list(inspect.signature(_f).parameters) == ["x", "new", "std"]
    assert _f.__deprecated_kwargs__ == {"old": "new", "var": "std"}


def test_renamed_kwargs_stacks_and_points_at_the_caller():
    g = renamed_kwargs(a="b")(renamed_kwargs(c="d")(lambda b=0, d=0: (b, d)))
    assert g.__deprecated_kwargs__ == {"a": "b", "c": "d"}
    with pytest.warns(DeprecationWarning) as rec:
        assert _f(0, old=2.0) == (0, 2.0, 0.0)
    assert rec[0].filename == __file__  # stacklevel: the warning names the caller's line


def test_deprecated_attribute_and_function():
    class C:
        std = 3.0
        var = deprecated_attribute("std", lambda s: s * s)

    with pytest.warns(DeprecationWarning, match=r"`C\.var`.*`\.std`"):
        assert C().var == 9.0

    @deprecated_function("new_f()")
    def old_f(x):
        return 2 * x

    with pytest.warns(DeprecationWarning, match=r"old_f\(\).*new_f\(\)"):
        assert old_f(2) == 4
    assert old_f.__deprecated__ == "new_f()"


def test_sqrt_variance_rejects_negative_and_non_numbers():
    assert sqrt_variance(4) == 2.0
    np.testing.assert_array_equal(sqrt_variance([0.0, 0.25]), [0.0, 0.5])
    with pytest.raises(ValueError, match="variance"):
        sqrt_variance(-1.0)
    with pytest.raises(ValueError, match="variances"):
        sqrt_variance([1.0, float("nan")])
    with pytest.raises(TypeError):
        sqrt_variance(["a"])


def test_as_generator():
    a = torch.randn(3, generator=as_generator(7))
    b = torch.randn(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)  # an int seeds a fresh CPU generator
    assert torch.equal(a, torch.randn(3, generator=as_generator(np.int64(7))))
    g = torch.Generator()
    assert as_generator(g) is g and as_generator(None) is None
    with pytest.raises(TypeError, match="`seed`"):
        as_generator(1.5)
    with pytest.raises(TypeError, match="`seed`"):
        as_generator(True)
    with pytest.raises(ValueError, match="`seed`"):
        as_generator(-1)


# ------------------------------------------------------ old names: inference


def _warns_same(old_call, new_call, match):
    """``old_call`` warns (every warning a DeprecationWarning, one matching ``match``) and
    returns what ``new_call`` returns without any DeprecationWarning."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        old = old_call()
    assert rec and all(issubclass(w.category, DeprecationWarning) for w in rec), rec
    assert any(re.search(match, str(w.message)) for w in rec), [str(w.message) for w in rec]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = new_call()
    _same(old, new)
    return new


def _small_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, generator=g, dtype=F64)
    y = torch.randn(6, generator=g, dtype=F64)
    net = serial(Dense(16, w_std=1.3, b_std=0.2), ReLU(), Dense(1))
    return net, x[:6], y, x[6:]


def test_ensemble_get_is_kernel():
    from widelimit.predict import gradient_descent_mse_ensemble

    net, xtr, ytr, xte = _small_problem()
    ens = gradient_descent_mse_ensemble(net, xtr, ytr)
    for k in ("nngp", "ntk"):
        out = _warns_same(
            lambda k=k: ens(xte, 2.0, get=k), lambda k=k: ens(xte, 2.0, kernel=k), "`get=`"
        )
        assert out.kernel == k
        with pytest.warns(DeprecationWarning, match=r"EnsemblePrediction\.get"):
            assert out.get == k
        _warns_same(lambda k=k: ens.eigen(get=k), lambda k=k: ens.eigen(k), "`get=`")


def test_one_diag_reg_default():
    """gp_inference, the flows, the estimators and posterior_mean share DIAG_REG = 1e-4
    relative to mean(diag K); the regularised mean is checked by a dense solve here."""
    from widelimit import NNGPRegressor, NTKClassifier, gp_inference, gradient_descent_mse
    from widelimit.predict import DIAG_REG, gradient_descent_mse_ensemble
    from widelimit.scale.solve import posterior_mean

    assert DIAG_REG == 1e-4
    funcs = (gp_inference, gradient_descent_mse, gradient_descent_mse_ensemble, posterior_mean)
    for fn in funcs:
        assert inspect.signature(fn).parameters["diag_reg"].default == DIAG_REG, fn
    for est in (NNGPRegressor, NTKClassifier):
        assert est().get_params()["diag_reg"] == DIAG_REG
    net, xtr, ytr, xte = _small_problem()
    kxx, ktx = net.kernel(xtr).nngp, net.kernel(xte, xtr).nngp
    post = gp_inference(kxx, ytr, ktx)
    a = kxx.numpy() + 1e-4 * np.mean(np.diag(kxx.numpy())) * np.eye(6)
    ref = ktx.numpy() @ np.linalg.solve(a, ytr.numpy())
    np.testing.assert_allclose(post.mean.numpy(), ref, rtol=1e-10)
    assert post.conditioning.reg == pytest.approx(1e-4 * float(kxx.diagonal().mean()))


def test_posterior_mean_old_keywords(tmp_path):
    from widelimit.scale import compute_kernel
    from widelimit.scale.solve import posterior_mean

    net, xtr, ytr, xte = _small_problem()
    store = compute_kernel(net, xtr, store=tmp_path / "k.zarr", progress=False)
    kte = net.kernel(xte, xtr).nngp.numpy()
    y = ytr.numpy()
    kw = {"diag_reg": 1e-3, "preconditioner": "none"}

    def fields(res):  # everything but the wall time
        return res.mean, res.alpha, res.iterations, res.residual, res.noise, res.history

    new = _warns_same(
        lambda: fields(posterior_mean(train=store, y=y, test=kte, **kw)),
        lambda: fields(posterior_mean(store, y, test_store=kte, **kw)),
        "`(train|y|test)=`",
    )[0]
    _same(new, posterior_mean(store, y_train=y, test_store=kte, **kw).mean)
    assert new.shape == (3, 1)


# --------------------------------------------------- old names: propagation


@pytest.mark.parametrize(
    "name, kw",
    [
        ("q_map", {"q": 0.7}),
        ("c_map", {"c": 0.3, "q": 0.7}),
        ("covariance_map", {"cov": np.array([[1.0, 0.4], [0.4, 0.8]])}),
    ],
)
def test_propagation_maps_old_keywords(name, kw):
    from widelimit import propagation

    fn = getattr(propagation, name)
    _warns_same(
        lambda: fn(act=Tanh(), sigma_w=1.3, sigma_b=0.2, **kw),
        lambda: fn(activation=Tanh(), w_std=1.3, b_std=0.2, **kw),
        "`act=`|`sigma_w=`|`sigma_b=`",
    )


def test_propagation_fixed_points_old_keywords_and_attributes():
    from widelimit.propagation import c_star, chi1, fixed_point, q_star, trajectory

    for fn in (q_star, chi1, c_star, fixed_point):
        _warns_same(
            lambda fn=fn: fn(act=Erf(), sigma_w=1.5, sigma_b=0.3),
            lambda fn=fn: fn(activation=Erf(), w_std=1.5, b_std=0.3),
            "`act=`",
        )
    fp = fixed_point(Erf(), 1.5, 0.3)
    with pytest.warns(DeprecationWarning, match=r"FixedPoint\.sigma_w"):
        assert fp.sigma_w == fp.w_std == 1.5
    with pytest.warns(DeprecationWarning, match=r"FixedPoint\.sigma_b"):
        assert fp.sigma_b == fp.b_std == 0.3
    traj = _warns_same(
        lambda: trajectory(Erf(), sigma_w=1.5, sigma_b=0.3, depth=3),
        lambda: trajectory(Erf(), w_std=1.5, b_std=0.3, depth=3),
        "`sigma_w=`",
    )
    with pytest.warns(DeprecationWarning, match=r"Trajectory\.sigma_w"):
        assert traj.sigma_w == 1.5


def test_q_star_many_variance_keywords_convert():
    from widelimit.propagation import q_star, q_star_many

    w2, b2 = np.array([0.5, 1.7, 2.5]), np.array([0.0, 0.09, 0.5])
    with pytest.warns(DeprecationWarning, match="`sigma_[wb]2=`"):
        old = q_star_many(Tanh(), sigma_w2=w2, sigma_b2=b2)
    new = q_star_many(Tanh(), np.sqrt(w2), np.sqrt(b2))
    np.testing.assert_allclose(old, new, rtol=1e-14)
    for i in range(3):  # scalar route (σ in, squared inside) agrees
        assert new[i] == pytest.approx(
            q_star(Tanh(), math.sqrt(w2[i]), math.sqrt(b2[i])), rel=1e-14
        )


def test_finite_study_old_keywords():
    from widelimit.propagation import finite_width_study, propagation_net

    net = _warns_same(
        lambda: propagation_net(act=ReLU(), sigma_w=1.2, sigma_b=0.1, depth=2, width=4),
        lambda: propagation_net(activation=ReLU(), w_std=1.2, b_std=0.1, depth=2, width=4),
        "`act=`",
    )
    assert net.layers[0].w_std == 1.2 and net.layers[0].b_std == 0.1
    kw = {"depth": 2, "widths": (4, 8), "n_seeds": 2, "progress": False}
    study = _warns_same(
        lambda: finite_width_study(act=ReLU(), sigma_w=1.2, sigma_b=0.1, **kw),
        lambda: finite_width_study(ReLU(), w_std=1.2, b_std=0.1, **kw),
        "`act=`",
    )
    with pytest.warns(DeprecationWarning, match=r"FiniteWidthStudy\.sigma_b"):
        assert study.sigma_b == 0.1


# ------------------------------------------------- σ conversions (critical line)


_B2 = np.array([0.0, 0.05, 0.5])


@pytest.mark.parametrize("act", [Tanh(), Erf()], ids=["tanh", "erf"])
def test_critical_line_std_squared_is_the_variance_result(act):
    """critical_line(b_std)² = the variance-based answer for the same inputs (old keyword,
    deprecated critical_sigma_w2); the deprecated attributes return variances."""
    from widelimit.propagation import critical_line, critical_sigma_w2, critical_w_std

    line = critical_line(act, np.sqrt(_B2), progress=False)
    with pytest.warns(DeprecationWarning, match="`sigma_b2=`"):
        old = critical_line(act, sigma_b2=_B2, progress=False)
    np.testing.assert_allclose(old.w_std, line.w_std, rtol=1e-15)
    for i, b2 in enumerate(_B2):
        with pytest.warns(DeprecationWarning, match=r"critical_sigma_w2\(\)"):
            w2, qs = critical_sigma_w2(act, b2)
        assert line.w_std[i] ** 2 == pytest.approx(w2, rel=1e-14)
        assert line.q_star[i] == pytest.approx(qs, rel=1e-12)
        assert critical_w_std(act, math.sqrt(b2))[0] == pytest.approx(line.w_std[i], rel=1e-15)
    with pytest.warns(DeprecationWarning, match=r"CriticalLine\.sigma_w2"):
        np.testing.assert_allclose(line.sigma_w2, line.w_std**2, rtol=0)
    with pytest.warns(DeprecationWarning, match=r"CriticalLine\.sigma_b2"):
        np.testing.assert_allclose(line.sigma_b2, _B2, rtol=1e-15, atol=1e-18)


def test_critical_w_std_closed_forms():
    """Independent routes: tanh'(0) = 1 so w_std = 1 at b_std = 0 (Brent resolves σw² to
    ~√eps at this transcritical point: tolerance 1e-6); ReLU: w_std = √2 for every b_std;
    erf on the line: σw = 1/√D(q*), σb = √(q* − σw² V(q*)) (closed forms written here)."""
    from widelimit.propagation import chi1, critical_line, critical_w_std

    assert critical_w_std(Tanh(), 0.0)[0] == pytest.approx(1.0, abs=1e-6)
    line = critical_line(ReLU(), [0.0, 0.3], progress=False)
    np.testing.assert_allclose(line.w_std, math.sqrt(2.0), rtol=1e-12)
    for qs in (0.05, 0.4, 2.0):
        d = 4 / math.pi / math.sqrt(1 + 4 * qs)
        v = 2 / math.pi * math.asin(2 * qs / (1 + 2 * qs))
        w = 1 / math.sqrt(d)
        b = math.sqrt(qs - w * w * v)
        assert critical_w_std(Erf(), b)[0] == pytest.approx(w, rel=1e-11)
    # χ₁ = σw²/2 for ReLU with σ given as standard deviations
    assert chi1(ReLU(), 1.2, 0.1) == pytest.approx(0.72, rel=1e-14)


def test_chi1_grid_and_phase_diagram_in_std():
    from widelimit.propagation import chi1, chi1_grid, phase_diagram

    w, b = np.array([0.8, 1.5]), np.array([0.0, 0.3, 0.6])
    x1, _ = chi1_grid(Tanh(), w, b)
    assert x1.shape == (3, 2)
    assert x1[1, 1] == pytest.approx(chi1(Tanh(), 1.5, 0.3), rel=1e-12)
    with pytest.warns(DeprecationWarning, match="`sigma_[wb]2=`"):
        x1_old, _ = chi1_grid(Tanh(), sigma_w2=w**2, sigma_b2=b**2)
    np.testing.assert_allclose(x1_old, x1, rtol=1e-13)
    pd = phase_diagram(Tanh(), w_std=w, b_std=b, line_b_std=[0.0, 0.5], progress=False)
    np.testing.assert_array_equal(pd.w_std, w)
    with pytest.warns(DeprecationWarning, match="`(line_)?sigma_[wb]2=`"):
        old = phase_diagram(
            Tanh(), sigma_w2=w**2, sigma_b2=b**2, line_sigma_b2=[0.0, 0.25], progress=False
        )
    np.testing.assert_allclose(old.line.w_std, pd.line.w_std, rtol=1e-14)
    with pytest.warns(DeprecationWarning, match=r"PhaseDiagram\.sigma_b2"):
        np.testing.assert_allclose(old.sigma_b2, b**2, rtol=1e-15)


# ---------------------------------------------------------- old names: sde


def test_sde_generator_is_seed():
    from widelimit import sde
    from widelimit.sde import ReLUDrift, ShapedReLU, SmoothShaped

    phi0 = torch.tensor([[1.0, 0.3], [0.3, 1.0]], dtype=F64)
    act = ShapedReLU.shaped(0.0, -1.0, 8)
    cases = [
        (sde.integrate_covariance, (phi0, ReLUDrift(0.0, -1.0)), {"times": 0.5, "dt": 0.1}),
        (sde.integrate_correlation, (0.3, ReLUDrift(0.0, -1.0)), {"times": 0.5, "dt": 0.1}),
        (sde.integrate_one_input, (1.0, -2.0), {"times": 0.5, "dt": 0.1}),
        (sde.sample_gram, (phi0, act), {"width": 8, "depth": 3}),
        (sde.finite_forward_gram, (torch.eye(2, 4, dtype=F64), act), {"width": 8, "depth": 3}),
    ]
    for fn, args, kw in cases:
        n = {"n_paths": 50} if "times" in kw else {"n_nets": 20}
        kw = {**kw, **n, "progress": False}
        _warns_same(
            lambda fn=fn, args=args, kw=kw: fn(
                *args, generator=torch.Generator().manual_seed(3), **kw
            ),
            lambda fn=fn, args=args, kw=kw: fn(*args, seed=3, **kw),
            "`generator=`",
        )
    _warns_same(
        lambda: sde.ShapedMLP(4, 8, 2, act, generator=torch.Generator().manual_seed(1))(
            torch.ones(1, 4, dtype=F64)
        ),
        lambda: sde.ShapedMLP(4, 8, 2, act, seed=1)(torch.ones(1, 4, dtype=F64)),
        "`generator=`",
    )
    kw = {"widths": (8,), "times": (0.5,), "n_nets": 50, "n_paths": 100, "progress": False}
    _warns_same(
        lambda: sde.compare_relu(generator=torch.Generator().manual_seed(2), **kw).rows,
        lambda: sde.compare_relu(seed=2, **kw).rows,
        "`generator=`",
    )
    kw = {"width": 8, "times": (0.5,), "n_nets": 50, "n_paths": 100, "progress": False}
    _warns_same(
        lambda: (
            sde.demonstrate_stability(
                phis=("tanh",), generator=torch.Generator().manual_seed(2), **kw
            ).rows
        ),
        lambda: sde.demonstrate_stability(activations=("tanh",), seed=2, **kw).rows,
        "`phis=`|`generator=`",
    )
    # phi= (the activation) -> activation=
    for fn in (sde.derivatives_at_zero, sde.shaped.smooth_activation):
        _warns_same(lambda fn=fn: fn(phi="tanh"), lambda fn=fn: fn(activation="tanh"), "`phi=`")
    for fn in (sde.b_star, sde.norm_stability):
        _warns_same(lambda fn=fn: fn(phi="sin", a=2.0), lambda fn=fn: fn("sin", 2.0), "`phi=`")
    with pytest.warns(DeprecationWarning, match="`phi=`"):
        assert SmoothShaped(phi="tanh", a=1.0, width=16).gain == SmoothShaped("tanh", 1.0, 16).gain
    # phi= (a covariance Φ) -> cov=
    d = ReLUDrift(0.0, -1.0)
    _warns_same(lambda: d(phi=phi0), lambda: d(cov=phi0), "`phi=`")
    _warns_same(lambda: d.flow(phi=phi0, h=0.1), lambda: d.flow(phi0, 0.1), "`phi=`")
    _warns_same(lambda: sde.correlations(phi=phi0), lambda: sde.correlations(phi0), "`phi=`")
    _warns_same(
        lambda: sde.finite.gram_factor(phi=phi0), lambda: sde.finite.gram_factor(phi0), "`phi=`"
    )
    # rng= (NumPy) -> seed=
    for fn in (sde.sample_linear_log_norm, sde.sample_unshaped_relu_log_norm):
        _warns_same(
            lambda fn=fn: fn(8, 3, 100, rng=np.random.default_rng(5)),
            lambda fn=fn: fn(8, 3, 100, seed=5),
            "`rng=`",
        )


def test_meanfield_problem_draws_take_seed():
    from widelimit.meanfield import IsotropicGaussians, TeacherStudent

    for prob in (IsotropicGaussians(d=4), TeacherStudent(noise_std=0.1)):
        for meth in ("init_particles", "sample"):
            fn = getattr(prob, meth)
            _warns_same(
                lambda fn=fn: fn(5, generator=torch.Generator().manual_seed(4)),
                lambda fn=fn: fn(5, seed=4),
                "`generator=`",
            )


# ------------------------------------------------------------ Scale -> Multiply


def test_scale_is_a_deprecated_multiply():
    from widelimit.spec_text import known_layers, parse_net

    with pytest.warns(DeprecationWarning, match="`Scale`.*`Multiply`"):
        s = Scale(0.5)
    assert isinstance(s, Multiply) and s.alpha == 0.5
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    net = serial(Dense(8, w_std=1.4), ReLU())
    _same(serial(net, s).kernel(x), serial(net, Multiply(0.5)).kernel(x))
    with pytest.warns(DeprecationWarning, match="`Scale`"):
        old = parse_net("Dense(8, w_std=1.4) -> ReLU -> Scale(0.5)")
    _same(old.kernel(x), parse_net("Dense(8, w_std=1.4) -> ReLU -> Multiply(0.5)").kernel(x))
    assert "Multiply" in known_layers() and "Scale" not in known_layers()
    assert widelimit.Multiply is Multiply
    import widelimit.layers as layers

    from_submodules = {n for m in (layers.normalization, layers.dense) for n in m.__all__}
    assert from_submodules <= set(layers.__all__)


# ----------------------------------------------------------------- signatures

_OLD_NAMES = {
    "sigma_w",
    "sigma_b",
    "sigma_w2",
    "sigma_b2",
    "act",
    "phi",
    "phis",
    "generator",
    "rng",
}

# Layer protocol (layers/base.py, dense.py, conv.py, local.py — owned by the kernel engineers): the
# hook make_module(in_shape, *, generator=...) and the finite modules' constructors still
# take a torch.Generator; users pass seed= to Layer.module(). To be renamed there.
_PENDING = {
    "make_module",
    "DenseModule.__init__",
    "ConvModule.__init__",
    "ConvLocalModule.__init__",
}


def _public_modules():
    mods = [widelimit]
    for info in pkgutil.walk_packages(widelimit.__path__, "widelimit."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        mods.append(importlib.import_module(info.name))
    return mods


def test_no_public_callable_takes_an_old_name():
    bad = []
    seen: set[int] = set()
    for mod in _public_modules():
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            targets = [(name, obj)] if not inspect.isclass(obj) else []
            if inspect.isclass(obj):
                for mname, meth in vars(obj).items():
                    if mname.startswith("_") and mname not in ("__init__", "__call__"):
                        continue
                    meth = getattr(meth, "__func__", meth)
                    if callable(meth):
                        targets.append((f"{name}.{mname}", meth))
            for where, fn in targets:
                if getattr(fn, "__deprecated__", None) or not callable(fn):
                    continue
                if where.split(".")[-1] in _PENDING or where in _PENDING:
                    continue
                try:
                    params = set(inspect.signature(fn).parameters)
                except (TypeError, ValueError):
                    continue
                if params & _OLD_NAMES:
                    bad.append(f"{mod.__name__}.{where}: {sorted(params & _OLD_NAMES)}")
    assert not bad, "old parameter names in public signatures:\n" + "\n".join(bad)
