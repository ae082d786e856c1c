"""One copy of each formula: the SDE drift and the mean-field ReLU kernel use the ReLU
layer's dual; checked here against the textbook arc-cosine closed form (written out in
numpy, Cho & Saul 2009, eq. (6)) and, for the gradients at |c| = 1, against hand-derived
values.  SDE activation names resolve through the one layer registry."""

import math

import numpy as np
import pytest
import torch

from widelimit.meanfield import relu_kernel
from widelimit.sde.drift import ReLUDrift, relu_nu, relu_nu_theta

F64 = torch.float64


def _nu_closed_form(rho: np.ndarray, kappa: float) -> np.ndarray:
    return kappa / math.pi * (np.sqrt(1 - rho**2) - rho * np.arccos(rho))


def test_relu_nu_against_closed_form():
    rho = np.linspace(-1, 0.9, 77)
    kappa = (0.3 + 1.2) ** 2 / 2
    got = relu_nu(torch.tensor(rho, dtype=F64), 0.3, -1.2).numpy()
    np.testing.assert_allclose(got, _nu_closed_form(rho, kappa), rtol=1e-12, atol=1e-15)
    theta = np.linspace(0.05, math.pi, 40)
    got_t = relu_nu_theta(torch.tensor(theta, dtype=F64), kappa).numpy()
    ref_t = kappa / math.pi * (np.sin(theta) - theta * np.cos(theta))
    np.testing.assert_allclose(got_t, ref_t, rtol=1e-11)
    # small angles: the cancellation-free form keeps the θ³/3 law (series by hand)
    small = torch.tensor([1e-3, 1e-2], dtype=F64)
    ref_small = kappa / math.pi * (small**3 / 3 - small**5 / 30)
    torch.testing.assert_close(relu_nu_theta(small, kappa), ref_small, rtol=1e-9, atol=0)


def test_relu_drift_matrix_against_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, 5, generator=g, dtype=F64)
    phi = a @ a.transpose(-1, -2) / 5  # (3, 4, 4) PSD states
    phi[0, 1, :] = phi[0, :, 1] = 0.0  # a zero-variance input gives a zero row
    drift = ReLUDrift(0.5, -0.7)
    d = phi.diagonal(dim1=-2, dim2=-1).numpy()
    scale = np.sqrt(d[..., :, None] * d[..., None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.clip(np.where(scale > 0, phi.numpy() / scale, 0.0), -1, 1)
    ref = scale * _nu_closed_form(rho, drift.strength)
    np.testing.assert_allclose(drift(phi).numpy(), ref, rtol=1e-11, atol=1e-14)
    assert torch.all(drift(phi)[0, 1] == 0)


def test_relu_kernel_against_closed_form():
    g = torch.Generator().manual_seed(1)
    w1 = torch.randn(6, 3, generator=g, dtype=F64)
    w2 = torch.randn(5, 3, generator=g, dtype=F64)
    n1, n2 = w1.norm(dim=1).numpy(), w2.norm(dim=1).numpy()
    c = np.clip((w1 @ w2.T).numpy() / np.outer(n1, n2), -1, 1)
    th = np.arccos(c)
    ref = np.outer(n1, n2) * (np.sin(th) + (np.pi - th) * c) / (2 * np.pi)
    # the direct formula cancels near c = −1: its own error is ~1e-16·‖w‖‖w'‖ there
    got = relu_kernel(w1, w2).numpy()
    assert np.all(np.abs(got - ref) <= 1e-12 * np.abs(ref) + 1e-15 * np.outer(n1, n2))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_relu_kernel_gradient_is_finite_at_parallel_weights(sign):
    """∇_w E[relu(w·x) relu(w'·x)] = E[1{w·x>0} x relu(w'·x)]: ``w/2`` at w' = w
    (E[x xᵀ 1{w·x>0}] = I/2) and ``0`` at w' = −w (the two ReLUs never fire together)."""
    w = torch.tensor([[0.6, -1.1, 0.4]], dtype=F64, requires_grad=True)
    k = relu_kernel(w, sign * w.detach())
    (grad,) = torch.autograd.grad(k.sum(), w)
    expected = w.detach() / 2 if sign > 0 else torch.zeros_like(w)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


def test_sde_activation_names_resolve_through_the_layer_registry():
    """One activation registry: SmoothShaped takes registry names (any spelling) and
    activation layers; the two SDE test-bed functions without a layer still work."""
    from widelimit.layers.activations import Sin, Tanh, activation_from_name
    from widelimit.sde import SMOOTH_ACTIVATIONS, SmoothShaped
    from widelimit.sde.shaped import smooth_activation

    x = torch.linspace(-3, 3, 13, dtype=F64)
    for name in ("tanh", "Tanh", "TANH"):
        torch.testing.assert_close(smooth_activation(name)(x), activation_from_name(name).fn(x))
    by_name, by_layer = SmoothShaped("sin", 0.8, 64), SmoothShaped(Sin(), 0.8, 64)
    assert by_name.gain == by_layer.gain and by_name.drift() == by_layer.drift()
    assert SmoothShaped(Tanh(), 1.0, 16).drift().phi3 == pytest.approx(-2.0, abs=1e-12)
    torch.testing.assert_close(SMOOTH_ACTIVATIONS["sinh"](x), torch.sinh(x))
    torch.testing.assert_close(SMOOTH_ACTIVATIONS["quadratic"](x), x + x * x / 2)
    with pytest.raises(ValueError, match="known activations"):
        SmoothShaped("relu6", 1.0, 16)
    with pytest.raises(TypeError, match="`activation`"):
        smooth_activation(3)
