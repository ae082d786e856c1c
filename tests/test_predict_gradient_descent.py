"""Function-space training under the NTK for any loss (``predict.gradient_descent``).

Independent routes:

* MSE: the closed form of :func:`gradient_descent_mse` (eigendecomposition), and
  for momentum the matrix exponential (``scipy.linalg.expm``) of the linear
  first-order system ``z' = A z`` written here;
* cross-entropy on a fixed kernel: explicit discrete gradient descent (and heavy
  ball) in function space, whose distance to the flow must shrink like the step;
* cross-entropy on finite networks: ``net.module(width)`` in NTK parameterization
  trained by full-batch gradient descent with ``torch.optim.SGD`` on the same loss.
  Their distance to the kernel prediction comes from the random NTK at
  initialisation and its drift in training, both ``O(width^{-1/2})`` in RMS over
  seeds (Jacot et al. 2018; Lee et al. 2019, Thm 2.1), so the log-log slope of the
  RMS error against width must be ``≈ −½``;
* ``max_learning_rate``: discrete gradient descent (with momentum) on MSE just below
  the bound converges and just above it diverges.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sla
import torch
import torch.nn.functional as F

from widelimit import Dense, ReLU, serial
from widelimit.predict import gradient_descent, gradient_descent_mse, max_learning_rate

torch.set_num_threads(1)

N, M, D, K = 8, 4, 4, 3  # train points, test points, input dim, classes


def mse(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The project's MSE convention: ½·mean over all targets (predict.py docstring)."""
    return 0.5 * ((f - y) ** 2).mean()


def cross_entropy(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(f, y)  # mean over examples, y one-hot


def _spec():
    return serial(Dense(1, w_std=1.5, b_std=0.1), ReLU(), Dense(K, w_std=1.2, b_std=0.2))


def _kernels(n=N, m=M, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + m, D, generator=g, dtype=torch.float64)
    ntk = _spec().kernel(x).ntk
    return x, ntk[:n, :n], ntk[n:, :n]


def _one_hot(n=N, seed=1):
    g = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(0, K, (n,), generator=g), K).to(torch.float64)


# --------------------------------------------------------------------------- MSE
@pytest.mark.parametrize("loss", [mse, "mse"])
@pytest.mark.parametrize(("lr", "y_shape"), [(1.0, (12,)), (0.3, (12, 2))])
def test_mse_loss_equals_gradient_descent_mse(lr, y_shape, loss):
    """The ODE (callable ``mse``) and the closed form (``"mse"``) against GradientFlow."""
    _, kxx, ktx = _kernels(12, 5)
    g = torch.Generator().manual_seed(3)
    y = torch.randn(y_shape, generator=g, dtype=torch.float64)
    f0 = torch.randn(y_shape, generator=g, dtype=torch.float64)
    f0t = torch.randn((5, *y_shape[1:]), generator=g, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.5, 3.0], [10.0, 40.0, 200.0]])
    ref = gradient_descent_mse(kxx, y, learning_rate=lr, diag_reg=0.0)(t, f0, f0t, ktx)
    # solver tolerance 1e-13: the global error is ~100× rtol here (3e-10 at the default 1e-11,
    # 1.3e-10 at 1e-12, 1.3e-12 at 1e-13, t up to 200)
    out = gradient_descent(loss, kxx, y, learning_rate=lr, rtol=1e-13, atol=1e-15)(t, f0, f0t, ktx)
    assert out.train.shape == (2, 3, *y_shape) and out.test.shape == (2, 3, 5, *y_shape[1:])
    err = max(float((out.train - ref.train).abs().max()), float((out.test - ref.test).abs().max()))
    assert err <= 1e-10, err
    torch.testing.assert_close(out.t, ref.t)
    assert float((out.train[1, 2] - f0).abs().max()) > 0.1  # the outputs did move


@pytest.mark.parametrize("loss", [mse, "mse"])
def test_mse_momentum_matches_matrix_exponential(loss):
    """``f'' = −Θ(f − y)/n + m f'`` (s = √lr·t, m = (μ−1)/√lr) solved by expm of a block matrix.

    ``mse`` goes through the ODE solver, ``"mse"`` through the damped-oscillator closed form.
    """
    _, kxx, ktx = _kernels()
    g = torch.Generator().manual_seed(4)
    y = torch.randn(N, 2, generator=g, dtype=torch.float64)
    f0 = torch.randn(N, 2, generator=g, dtype=torch.float64)
    f0t = torch.randn(M, 2, generator=g, dtype=torch.float64)
    lr, mu = 0.5, 0.7
    n_t = y.numel()
    m = (mu - 1) / math.sqrt(lr)
    th, tx = kxx.numpy(), ktx.numpy()
    # z = (f − y, f', f_test, f_test'), each column of the outputs separately
    a = np.zeros((2 * N + 2 * M, 2 * N + 2 * M))
    a[:N, N : 2 * N] = np.eye(N)
    a[N : 2 * N, :N] = -th / n_t
    a[N : 2 * N, N : 2 * N] = m * np.eye(N)
    a[2 * N : 2 * N + M, 2 * N + M :] = np.eye(M)
    a[2 * N + M :, :N] = -tx / n_t
    a[2 * N + M :, 2 * N + M :] = m * np.eye(M)
    z0 = np.concatenate([(f0 - y).numpy(), np.zeros((N, 2)), f0t.numpy(), np.zeros((M, 2))])
    times = [0.0, 2.0, 15.0, 60.0]
    out = gradient_descent(loss, kxx, y, learning_rate=lr, momentum=mu)(
        torch.tensor(times), f0, f0t, ktx
    )
    for i, t in enumerate(times):
        z = sla.expm(a * math.sqrt(lr) * t) @ z0
        np.testing.assert_allclose(out.train[i].numpy(), z[:N] + y.numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(out.test[i].numpy(), z[2 * N : 2 * N + M], rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- CE, fixed kernel
def _discrete(kxx, ktx, y, f0, f0t, lr, steps, momentum=None):
    """Gradient descent (heavy ball if ``momentum``) in function space, step by step."""
    f, ft = f0.clone(), f0t.clone()
    v, vt = torch.zeros_like(f), torch.zeros_like(ft)
    for _ in range(steps):
        fr = f.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(cross_entropy(fr, y), fr)
        if momentum is None:
            f, ft = f - lr * kxx @ grad, ft - lr * ktx @ grad
        else:  # v ← μ v − lr Θ ∇L, f ← f + v (linearised heavy ball)
            v, vt = momentum * v - lr * kxx @ grad, momentum * vt - lr * ktx @ grad
            f, ft = f + v, ft + vt
    return torch.cat([f, ft])


@pytest.mark.parametrize("momentum", [None, 0.6])
def test_cross_entropy_flow_is_the_small_step_limit_of_discrete_descent(momentum):
    """Discrete descent with step lr approaches the ODE as lr → 0 (fitted order over 3 steps).

    Plain descent is forward Euler for the flow: order 1 in lr.  Heavy ball is a
    first-order scheme in the time unit √lr whose friction ``(μ − 1)/√lr`` itself grows
    as lr → 0 (Neural Tangents' continuous-time model), so only "at least ½" is
    guaranteed (measured ≈ 0.86).  The error must also be small at the smallest step.
    """
    _, kxx, ktx = _kernels()
    y = _one_hot()
    g = torch.Generator().manual_seed(5)
    f0 = torch.randn(N, K, generator=g, dtype=torch.float64)
    f0t = torch.randn(M, K, generator=g, dtype=torch.float64)
    t_abs = 6.0 if momentum is None else 3.0  # in units of lr (plain) or √lr (momentum)
    errs, lrs = [], [0.2, 0.05, 0.0125]
    for lr in lrs:
        scale = lr if momentum is None else math.sqrt(lr)
        steps = round(t_abs / scale)
        gd = gradient_descent(cross_entropy, kxx, y, learning_rate=lr, momentum=momentum)
        pred = gd(steps, f0, f0t, ktx)
        flow = torch.cat([pred.train, pred.test])
        disc = _discrete(kxx, ktx, y, f0, f0t, lr, steps, momentum)
        errs.append(float((flow - disc).abs().max()))
    order = np.polyfit(np.log(lrs), np.log(errs), 1)[0]
    if momentum is None:
        assert abs(order - 1.0) <= 0.15, (order, errs)
    else:
        assert order >= 0.5, (order, errs)
    moved = float((torch.cat([pred.train, pred.test]) - torch.cat([f0, f0t])).abs().max())
    assert errs[-1] <= 0.05 * moved, (errs, moved)


# --------------------------------------------------------------------------- CE, finite nets
def _finite_vs_kernel(widths, n_seeds, lr, steps, momentum=None):
    """Squared distances between trained finite nets and the kernel flow, per width and seed.

    With ``momentum``, ``torch.optim.SGD(momentum=μ)`` (``b ← μ b + ∇L``, ``θ ← θ − lr·b``)
    is the heavy ball ``v ← μ v − lr ∇L`` of :func:`gradient_descent` with ``v = −lr·b``.
    """
    x, kxx, ktx = _kernels()
    y = _one_hot()
    spec = _spec()
    gd = gradient_descent(
        cross_entropy, kxx, y, learning_rate=lr, momentum=momentum, rtol=1e-9, atol=1e-11
    )
    sq_err = np.zeros((len(widths), n_seeds))
    moved = []
    for i, width in enumerate(widths):
        for s in range(n_seeds):
            net = spec.module(width, input_shape=D, seed=1000 * i + s, dtype=torch.float64)
            with torch.no_grad():
                f0 = net(x)
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum or 0.0)
            for _ in range(steps):
                opt.zero_grad()
                cross_entropy(net(x[:N]), y).backward()
                opt.step()
            with torch.no_grad():
                f_net = net(x)
            pred = gd(steps, f0[:N], f0[N:], ktx)
            f_ker = torch.cat([pred.train, pred.test])
            sq_err[i, s] = float(((f_net - f_ker) ** 2).mean())
            moved.append(float(((f_ker - f0) ** 2).mean().sqrt()))
    return sq_err, float(np.mean(moved))


def _slope_and_se(widths, sq_err):
    """Log-log slope of the RMS error and its standard error from the seed-to-seed spread.

    ``log RMS = ½ log mean(e²)``; by the delta method its standard error is
    ``½ sd(e²) / (√S mean(e²))``; the unweighted least-squares slope has standard error
    ``√(Σ σ_w² (x_w − x̄)²) / Σ (x_w − x̄)²``.
    """
    xs = np.log(widths)
    ms = sq_err.mean(1)
    rms = np.sqrt(ms)
    sig = 0.5 * sq_err.std(1, ddof=1) / (math.sqrt(sq_err.shape[1]) * ms)
    slope = np.polyfit(xs, np.log(rms), 1)[0]
    dx = xs - xs.mean()
    se = math.sqrt(float((sig**2 * dx**2).sum())) / float((dx**2).sum())
    return slope, se, rms


# Z standard errors of the slope plus 0.1 for the O(1/width) corrections that bend the
# log-log line at small widths (measured: slope −0.51 to −0.56 over 64..4096).
Z, SLOPE_BIAS = 3.0, 0.1


def test_cross_entropy_finite_nets_approach_kernel_flow_as_width_grows():
    widths = [32, 128, 512]
    # lr·steps = 25 time units; the step's own error (vs the flow, on the same kernel)
    # is ~0.002, below 3% of the RMS error at the largest width.
    sq_err, moved = _finite_vs_kernel(widths, n_seeds=6, lr=0.25, steps=100)
    slope, se, rms = _slope_and_se(widths, sq_err)
    assert abs(slope + 0.5) <= Z * se + SLOPE_BIAS, (slope, se, rms)
    assert rms[-1] <= 0.15 * moved, (rms, moved)  # close in absolute terms too


@pytest.mark.slow
def test_cross_entropy_width_sweep_slow():
    widths = [64, 256, 1024, 4096]
    sq_err, moved = _finite_vs_kernel(widths, n_seeds=12, lr=0.1, steps=300)
    slope, se, rms = _slope_and_se(widths, sq_err)
    assert abs(slope + 0.5) <= Z * se + SLOPE_BIAS, (slope, se, rms)
    assert rms[-1] <= 0.05 * moved, (rms, moved)


@pytest.mark.slow
def test_cross_entropy_momentum_finite_nets_slow():
    """torch.optim.SGD with momentum 0.9 against the heavy-ball flow (time unit √lr).

    lr = 0.02 for 150 steps: the scheme's own error (function-space heavy ball vs the
    flow, same kernel) is ≈ 0.004, a tenth of the RMS error at width 4096 (measured
    slope −0.53 over 64..4096 with 4 seeds).
    """
    widths = [64, 256, 1024, 4096]
    sq_err, moved = _finite_vs_kernel(widths, n_seeds=8, lr=0.02, steps=150, momentum=0.9)
    slope, se, rms = _slope_and_se(widths, sq_err)
    assert abs(slope + 0.5) <= Z * se + SLOPE_BIAS, (slope, se, rms)
    assert rms[-1] <= 0.05 * moved, (rms, moved)


# --------------------------------------------------------------------------- max_learning_rate
def _mse_descent_diverges(kxx, y, lr, momentum, steps=3000):
    f, v = torch.zeros_like(y), torch.zeros_like(y)
    n_t = y.numel()
    for _ in range(steps):
        v = momentum * v - lr * kxx @ (f - y) / n_t
        f = f + v
    return float((f - y).abs().max()) > 1.0


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_max_learning_rate_is_the_stability_edge(momentum):
    _, kxx, _ = _kernels()
    y = torch.ones(N, 2, dtype=torch.float64)
    lr_max = max_learning_rate(kxx, y_train_size=y.numel(), momentum=momentum)
    lam = float(torch.linalg.eigvalsh(kxx)[-1])
    assert lr_max == pytest.approx(2 * (1 + momentum) * y.numel() / lam, rel=1e-10)
    assert not _mse_descent_diverges(kxx, y, 0.98 * lr_max, momentum)
    assert _mse_descent_diverges(kxx, y, 1.02 * lr_max, momentum)
    default_n = max_learning_rate(kxx, momentum=momentum)  # n_targets defaults to N
    assert default_n == pytest.approx(lr_max / 2, rel=1e-10)


# --------------------------------------------------------------------------- errors
def test_gradient_descent_errors():
    _, kxx, ktx = _kernels()
    y = _one_hot()
    gd = gradient_descent(cross_entropy, kxx, y)
    with pytest.raises(ValueError, match="finite"):
        gd(None)
    with pytest.raises(ValueError, match="f0_test"):
        gd(1.0, 0.0, None, ktx)
    with pytest.raises(ValueError, match="f0_train"):
        gd(1.0, torch.zeros(N, K + 1))
    with pytest.raises(ValueError, match="scalar"):
        gradient_descent(lambda f, y: f - y, kxx, y)(1.0)
    with pytest.raises(ValueError, match="non-finite"):
        gradient_descent(lambda f, y: (f.abs() ** 0.5).sum(), kxx, y)(1.0)
    with pytest.raises(TypeError, match="loss"):
        gradient_descent(3, kxx, y)
    with pytest.raises(ValueError, match="'hinge' is not a known loss"):
        gradient_descent("hinge", kxx, y)
    with pytest.raises(ValueError, match="momentum"):
        gradient_descent(cross_entropy, kxx, y, momentum=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        gradient_descent(cross_entropy, kxx, y, learning_rate=0.0)
    with pytest.raises(ValueError, match="y_train"):
        gradient_descent(cross_entropy, kxx, y[:-1])
    out = gd(0.0, torch.zeros(N, K))  # t = 0 returns the initial outputs
    assert float(out.train.abs().max()) == 0.0


# --------------------------------------------------------------------------- issue 24, item 6
def test_issue24_gradient_descent_refuses_integer_labels():
    """Integer labels were cast to float: cross-entropy read (N,) labels as one sample's
    probabilities.  Now they need ``num_classes`` and are one-hot encoded."""
    _, kxx, ktx = _kernels()
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, K, (N,), generator=g)
    with pytest.raises(ValueError, match=r"integer.*num_classes=C"):
        gradient_descent(cross_entropy, kxx, labels)
    with pytest.raises(ValueError, match=r"integer.*num_classes"):
        gradient_descent("cross_entropy", kxx, labels.numpy())
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        gradient_descent("cross_entropy", kxx, labels, num_classes=2)
    with pytest.raises(ValueError, match="floating point"):
        gradient_descent("cross_entropy", kxx, _one_hot(), num_classes=K)
    one_hot = F.one_hot(labels, K).to(torch.float64)
    ref = gradient_descent(cross_entropy, kxx, one_hot)(3.0, 0.0, 0.0, ktx)
    for loss in (cross_entropy, "cross_entropy"):
        out = gradient_descent(loss, kxx, labels, num_classes=K)(3.0, 0.0, 0.0, ktx)
        assert out.train.shape == (N, K)
        torch.testing.assert_close(out.train, ref.train, rtol=0, atol=1e-12)
        torch.testing.assert_close(out.test, ref.test, rtol=0, atol=1e-12)
    # trained long enough, the largest logit of each example is its label's
    late = gradient_descent("cross_entropy", kxx, labels, num_classes=K)(300.0).train
    assert torch.equal(late.argmax(1), labels)


def test_issue24_gradient_descent_cross_entropy_refuses_ambiguous_targets():
    _, kxx, _ = _kernels()
    with pytest.raises(ValueError, match=r"\(N, C\).*ambiguous"):
        gradient_descent("cross_entropy", kxx, torch.rand(N, dtype=torch.float64))
    with pytest.raises(ValueError, match="class probabilities"):
        gradient_descent("cross_entropy", kxx, 2 * _one_hot())
    probs = torch.softmax(torch.randn(N, K, dtype=torch.float64), 1)
    gradient_descent("cross_entropy", kxx, probs)  # soft labels are fine


def test_issue24_gradient_descent_refuses_nonsymmetric_or_non_psd_kernel():
    _, kxx, _ = _kernels()
    y = _one_hot()
    asym = kxx.clone()
    asym[0, 1] += 0.1 * float(kxx.abs().max())
    with pytest.raises(ValueError, match=r"k_train_train.*not symmetric"):
        gradient_descent(cross_entropy, asym, y)
    evals, evecs = torch.linalg.eigh(kxx)
    evals[0] = -0.05 * evals[-1]
    with pytest.raises(ValueError, match=r"k_train_train.*not positive semi-definite"):
        gradient_descent(cross_entropy, (evecs * evals) @ evecs.T, y)
    with pytest.raises(ValueError, match=r"k_train_train.*not positive semi-definite"):
        gradient_descent("mse", (evecs * evals) @ evecs.T, y)


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_issue24_gradient_descent_refuses_learning_rate_above_mse_stability_limit(momentum):
    """Above 2(1+μ)·n_targets/λ_max real descent diverges while the flow converged silently."""
    _, kxx, _ = _kernels()
    y = torch.ones(N, 2, dtype=torch.float64)
    lam = float(torch.linalg.eigvalsh(kxx)[-1])
    limit = 2 * (1 + (momentum or 0.0)) * y.numel() / lam
    assert _mse_descent_diverges(kxx, y, 1.02 * limit, momentum or 0.0)  # the real dynamics
    for loss in (mse, "mse"):
        gd = gradient_descent(loss, kxx, y, learning_rate=0.98 * limit, momentum=momentum)
        gd(5.0, 0.0)  # accepted below
        with pytest.raises(ValueError, match=r"stability limit (\S+) ") as err:
            gradient_descent(loss, kxx, y, learning_rate=1.02 * limit, momentum=momentum)(5.0)
        got = float(err.value.args[0].split("stability limit ")[1].split(" ")[0])
        assert got == pytest.approx(limit, rel=1e-5)


def test_issue24_stability_limit_from_lanczos_for_many_outputs():
    """Above 64 outputs the curvature comes from Lanczos (eigsh): the callable MSE on
    ``(20, 5)`` targets must give ``2·n_targets/λ_max(Θ)``, its exact limit."""
    x, _, _ = _kernels(20, 0)
    kxx = _spec().kernel(x).ntk
    y = torch.zeros(20, 5, dtype=torch.float64)
    limit = 2 * y.numel() / float(torch.linalg.eigvalsh(kxx)[-1])
    with pytest.raises(ValueError, match=r"stability limit") as err:
        gradient_descent(mse, kxx, y, learning_rate=1.001 * limit)(1.0, 1.0)
    got = float(err.value.args[0].split("stability limit ")[1].split(" ")[0])
    assert got == pytest.approx(limit, rel=1e-5)
    gradient_descent(mse, kxx, y, learning_rate=0.999 * limit)(1.0, 1.0)


def test_issue24_gradient_descent_refuses_learning_rate_above_cross_entropy_stability_limit():
    """At f = 0 the cross-entropy Hessian is ``(I − 11ᵀ/K)/(N·K)`` per example (softmax at the
    uniform point), so ``κ = λ_max(Θ)/(N·K)`` and the limit is ``2·N·K/λ_max(Θ)``."""
    _, kxx, _ = _kernels()
    y = _one_hot()
    limit = 2 * N * K / float(torch.linalg.eigvalsh(kxx)[-1])
    with pytest.raises(ValueError, match=r"stability limit .*initial outputs") as err:
        gradient_descent(cross_entropy, kxx, y, learning_rate=1.01 * limit)(1.0, 0.0)
    got = float(err.value.args[0].split("stability limit ")[1].split(" ")[0])
    assert got == pytest.approx(limit, rel=1e-5)
    gradient_descent(cross_entropy, kxx, y, learning_rate=0.99 * limit)(0.0, 0.0)


def test_issue24_stability_checked_on_the_way_for_cross_entropy():
    """Binary cross-entropy from confidently wrong logits: the curvature is tiny at the start and
    at the end and peaks where the trajectory crosses p = ½ (Hessian ``(2 p₁p₂/N)`` per example
    on the logit difference direction, Θ = I), so checking the two ends is not enough.

    At ``lr = 1.5 × 4N`` (the limit at p = ½ is ``2/(1/(2N)) = 4N``) the flow from margin −6
    ends confidently right, with ``lr·κ < 2`` at both ends (computed here in closed form,
    the flow taken at a stable rate with the same ``s = lr·t``), yet is refused on the way;
    real descent jumps over the boundary in one step (margin −6 → 5.97).
    """
    n = 4
    kxx = torch.eye(n, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]] * n, dtype=torch.float64)
    f0 = torch.tensor([[-3.0, 3.0]] * n, dtype=torch.float64)
    lr, t = 1.5 * 4 * n, 20.0

    def kappa(f):  # λ_max of (1/N)(diag p − p pᵀ) for 2 classes: 2 p₁ p₂ / N
        p = torch.softmax(f[0], 0)
        return float(2 * p[0] * p[1] / n)

    slow = gradient_descent(cross_entropy, kxx, y, learning_rate=1.0)(lr * t, f0).train
    assert lr * kappa(f0) < 2 and lr * kappa(slow) < 2  # both ends pass
    assert float(slow[0, 0] - slow[0, 1]) > 5  # and the flow ends confidently right
    with pytest.raises(ValueError, match=r"stability limit .*on the way, near t = 0\.[3-7]"):
        gradient_descent(cross_entropy, kxx, y, learning_rate=lr)(t, f0)
    one_step = _discrete(kxx, kxx, y, f0, f0, lr, 1)[:n]  # the real descent
    jump = -6 + 12 * (1 - math.exp(-6) / (1 + math.exp(-6)))  # −6 + lr·(2/N)(1 − σ(−6))
    assert float(one_step[0, 0] - one_step[0, 1]) == pytest.approx(jump, rel=1e-12)


@pytest.mark.parametrize("momentum", [None, 0.8])
def test_issue24_gradient_descent_mse_cost_does_not_grow_with_t(momentum):
    """``t = 1e12`` (the ODE needed O(t) steps) is the converged solution: train outputs at
    the targets, test outputs ``f0_test + Θ*x Θ⁻¹ (y − f0_train)`` (a linear solve)."""
    _, kxx, ktx = _kernels()
    g = torch.Generator().manual_seed(6)
    y = torch.randn(N, 2, generator=g, dtype=torch.float64)
    f0 = torch.randn(N, 2, generator=g, dtype=torch.float64)
    f0t = torch.randn(M, 2, generator=g, dtype=torch.float64)
    gd = gradient_descent("mse", kxx, y, learning_rate=0.1, momentum=momentum)
    out = gd(torch.tensor([1e6, 1e12]), f0, f0t, ktx)
    limit_test = f0t + ktx @ torch.linalg.solve(kxx, y - f0)
    scale = float(limit_test.abs().max())
    for i in range(2):
        torch.testing.assert_close(out.train[i], y, rtol=0, atol=1e-8)
        torch.testing.assert_close(out.test[i], limit_test, rtol=0, atol=1e-7 * scale)


def test_issue24_gradient_descent_ode_cost_is_bounded():
    _, kxx, _ = _kernels()
    y = torch.ones(N, 2, dtype=torch.float64)
    gd = gradient_descent(mse, kxx, y, learning_rate=0.1, max_evaluations=2000)
    with pytest.raises(RuntimeError, match=r"max_evaluations = 2000.*reached s = .* of 1e\+11"):
        gd(1e12)


@pytest.mark.parametrize(
    "loss",
    [lambda f, y: torch.tensor(1.0, dtype=torch.float64), lambda f, y: (f.detach() ** 2).sum()],
)
def test_issue24_gradient_descent_loss_not_depending_on_f_is_refused(loss):
    _, kxx, _ = _kernels()
    with pytest.raises(ValueError, match="does not depend on f_train"):
        gradient_descent(loss, kxx, _one_hot())(1.0)


@pytest.mark.parametrize("lr_mu", [(0.5, 0.7), (0.01, 0.9), (2.0, 0.0)])
def test_heavy_ball_closed_form_matches_expm_in_every_damping_regime(lr_mu):
    """``loss="mse"`` with momentum on a diagonal kernel, one eigenvalue per example, from 0
    through critical damping (``λ = n m²/4``, and ±1e-9 around it) to just below the stability
    limit: with ``k_test_train = I``, ``f0 − y = 1`` and ``f0_test = 0`` the test outputs are
    ``−u(s)``, ``u'' = (1 − λu)/n + m u'``, against scipy's expm of ``(u, u', 1)``."""
    lr, mu = lr_mu
    m, n_t = (mu - 1) / math.sqrt(lr), 8
    crit = n_t * m * m / 4
    top = 0.99 * 2 * (1 + mu) * n_t / lr  # just below the stability limit
    lam = torch.tensor(
        [0.0, 1e-9, 0.01 * crit, crit * (1 - 1e-9), crit, crit * (1 + 1e-9), 3 * crit, top],
        dtype=torch.float64,
    )
    t = torch.tensor([0.0, 0.3, 2.0, 11.0, 60.0], dtype=torch.float64)
    eye = torch.eye(n_t, dtype=torch.float64)
    gd = gradient_descent("mse", torch.diag(lam), torch.zeros(n_t, dtype=torch.float64),
                          learning_rate=lr, momentum=mu)  # fmt: skip
    u = -gd(t, torch.ones(n_t, dtype=torch.float64), 0.0, eye).test  # (T, N)
    for j, lj in enumerate(lam.tolist()):
        a = np.array([[0.0, 1.0, 0.0], [-lj / n_t, m, 1.0 / n_t], [0.0, 0.0, 0.0]])
        for i, ti in enumerate(t.tolist()):
            ref = (sla.expm(a * math.sqrt(lr) * ti) @ np.array([0.0, 0.0, 1.0]))[0]
            assert abs(float(u[i, j]) - ref) <= 1e-10 * max(1.0, abs(ref)), (lj, ti, ref)
