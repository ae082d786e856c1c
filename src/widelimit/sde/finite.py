"""Finite shaped networks: a plain torch forward pass and the exact Gaussian sampler.

Network (docs/sde.md, 'The network'): ``h¹ = W⁰x/√n₀``, ``h^{l+1} = √(c/n) W^l φ_s(h^l)``,
``W`` i.i.d. ``N(0, 1)``, ``d`` hidden layers of width ``n``.  For ``m`` inputs
``x`` of shape ``(m, n₀)`` the penultimate covariance is
``Φ_d = (c/n) φ_s(H_d) φ_s(H_d)ᵀ`` (``(m, m)``), and ``Φ_0 = x xᵀ/n₀``.

Exact sampler: given ``Φ_l``, the ``n`` rows of the next pre-activation are i.i.d.
``N(0, Φ_l)`` (conditionally on the past), so one layer costs an ``m × m`` factor and
``n·m`` Gaussians instead of an ``n × n`` matrix product; ``d = Tn`` layers are cheap.
Both routes give the same law of ``(Φ_1, …, Φ_d)`` (tested).

Non-finite or overflowing states (``Φ^{αα} > 1e100``) of unstable activations are
marked ``inf`` from then on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from widelimit._validation import as_float_tensor, check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.progress import progress_bar
from widelimit.seeding import Seed, as_generator

__all__ = ["ShapedMLP", "finite_forward_gram", "gram_factor", "sample_gram"]


_OVERFLOW = 1e100


@renamed_kwargs(phi="cov")
def gram_factor(cov: Tensor) -> Tensor:
    """A factor ``L`` with ``L Lᵀ = Φ`` for PSD ``cov`` Φ ``(..., m, m)``: Cholesky, eigh
    fallback."""
    chol, info = torch.linalg.cholesky_ex(cov)
    bad = info != 0
    if bool(bad.any()):
        evals, evecs = torch.linalg.eigh(cov[bad])
        chol = chol.clone()
        chol[bad] = evecs * evals.clamp_min(0).sqrt().unsqueeze(-2)
    return chol


@renamed_kwargs(generator="seed")
def sample_gram(
    phi0: Tensor,
    activation: nn.Module,
    *,
    width: int,
    depth: int,
    n_nets: int,
    record: Sequence[int] | None = None,
    seed: Seed = None,
    chunk: int = 4096,
    fast_normals: bool = True,
    progress: bool = True,
) -> Tensor:
    """Exact layer-by-layer sampler of the penultimate covariances of many finite nets.

    Args:
        phi0: ``(m, m)`` input Gram ``Φ_0 = x xᵀ/n₀`` (symmetric PSD).
        activation: elementwise module with a ``gain`` attribute ``c``
            (:class:`~widelimit.sde.ShapedReLU`, :class:`~widelimit.sde.SmoothShaped`).
        width, depth: ``n`` and ``d`` (``T = d/n``).
        n_nets: number of independent networks.
        record: layers ``l ∈ {1, …, d}`` at which ``Φ_l`` is kept (default ``(d,)``).
        seed: ``int``, ``torch.Generator`` or ``None`` (global RNG); ``generator=`` is
            deprecated.
        fast_normals: draw the Gaussians in float32 and promote them (about 6× faster on
            CPU; a resolution of 2⁻²⁴ is far below any Monte Carlo error).  ``False``
            draws them in the dtype of ``phi0``.

    Returns:
        ``(len(record), n_nets, m, m)`` tensor of ``Φ_l`` (dtype/device of ``phi0``);
        exploded nets hold ``inf``.
    """
    phi0 = as_float_tensor("phi0", phi0, min_ndim=2, max_ndim=2)
    generator = as_generator(seed, phi0.device)
    m = phi0.shape[0]
    if phi0.shape != (m, m) or not torch.allclose(phi0, phi0.T):
        raise ValueError(f"`phi0` must be a symmetric (m, m) matrix; got shape {tuple(phi0.shape)}")
    n = check_positive_int("width", width)
    d = check_positive_int("depth", depth)
    b = check_positive_int("n_nets", n_nets)
    layers = (d,) if record is None else tuple(int(r) for r in record)
    if not layers or any(r < 1 or r > d for r in layers):
        raise ValueError(f"`record` layers must lie in 1..depth={d}; got {record!r}")
    gain = float(activation.gain)
    zdtype = torch.float32 if fast_normals and phi0.dtype == torch.float64 else phi0.dtype
    out = torch.empty((len(layers), b, m, m), dtype=phi0.dtype, device=phi0.device)
    with progress_bar(progress) as bar:
        task = bar.add_task("finite nets (exact sampler)", total=d * math.ceil(b / chunk))
        for start in range(0, b, chunk):
            nb = min(chunk, b - start)
            phi = phi0.expand(nb, m, m).clone()
            dead = torch.zeros(nb, dtype=torch.bool, device=phi0.device)
            for layer in range(1, d + 1):
                z = torch.randn(
                    (nb, n, m), generator=generator, dtype=zdtype, device=phi0.device
                ).to(phi0.dtype)
                h = z @ gram_factor(phi).transpose(-1, -2)  # rows ~ N(0, Φ_{l-1})
                a = activation(h)
                phi = (gain / n) * (a.transpose(-1, -2) @ a)
                diag = torch.diagonal(phi, dim1=-2, dim2=-1)
                dead |= ~torch.isfinite(phi).all(dim=(-1, -2)) | (diag > _OVERFLOW).any(-1)
                if bool(dead.any()):
                    phi[dead] = torch.eye(m, dtype=phi.dtype, device=phi.device)
                if layer in layers:
                    rec = phi.clone()
                    rec[dead] = math.inf
                    for i, r in enumerate(layers):
                        if r == layer:
                            out[i, start : start + nb] = rec
                bar.advance(task)
    return out


class ShapedMLP(nn.Module):
    """Plain finite shaped network (for real use): ``n₀ → n → … → n → n_out``.

    ``h¹ = W⁰x/√n₀``, ``h^{l+1} = √(c/n) W^l φ_s(h^l)`` for ``d`` hidden layers, output
    ``√(c/n) W^d φ_s(h^d)``; all ``W`` i.i.d. ``N(0, 1)`` (``nn.Linear`` without bias).
    ``forward``: ``(N, n₀) -> (N, n_out)``; :meth:`penultimate_gram`: ``(N, n₀) -> (N, N)``.
    """

    @renamed_kwargs(generator="seed")
    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        activation: nn.Module,
        *,
        out_features: int = 1,
        seed: Seed = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        n0 = check_positive_int("in_features", in_features)
        self.width = check_positive_int("width", width)
        self.depth = check_positive_int("depth", depth)
        dims = [n0] + [self.width] * self.depth + [check_positive_int("out_features", out_features)]
        self.linears = nn.ModuleList(
            nn.Linear(i, o, bias=False, dtype=dtype) for i, o in itertools.pairwise(dims)
        )
        generator = as_generator(seed)
        with torch.no_grad():
            for lin in self.linears:
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=generator, dtype=dtype))
        self.activation = activation
        self.gain = float(activation.gain)

    def _last_hidden(self, x: Tensor) -> Tensor:
        h = self.linears[0](x) / math.sqrt(x.shape[-1])
        mult = math.sqrt(self.gain / self.width)
        for lin in self.linears[1:-1]:
            h = mult * lin(self.activation(h))
        return self.activation(h)

    def forward(self, x: Tensor) -> Tensor:
        return math.sqrt(self.gain / self.width) * self.linears[-1](self._last_hidden(x))

    def penultimate_gram(self, x: Tensor) -> Tensor:
        """``Φ_d = (c/n) φ_s(H_d) φ_s(H_d)ᵀ`` for inputs ``x: (N, n₀)``; returns ``(N, N)``."""
        a = self._last_hidden(x)
        return (self.gain / self.width) * (a @ a.T)


@renamed_kwargs(generator="seed")
def finite_forward_gram(
    x: Tensor,
    activation: nn.Module,
    *,
    width: int,
    depth: int,
    n_nets: int,
    seed: Seed = None,
    chunk: int = 64,
    progress: bool = True,
) -> Tensor:
    """Penultimate ``Φ_d`` of ``n_nets`` independent finite nets by a batched forward pass.

    ``x``: ``(m, n₀)`` inputs.  Returns ``(n_nets, m, m)``.  Costs ``d·n²·m`` per net;
    use :func:`sample_gram` for deep nets (same law).
    """
    x = as_float_tensor("x", x, min_ndim=2, max_ndim=2)
    generator = as_generator(seed, x.device)
    m, n0 = x.shape
    n = check_positive_int("width", width)
    d = check_positive_int("depth", depth)
    b = check_positive_int("n_nets", n_nets)
    gain = float(activation.gain)
    mult = math.sqrt(gain / n)
    out = torch.empty((b, m, m), dtype=x.dtype, device=x.device)
    kw = {"generator": generator, "dtype": x.dtype, "device": x.device}
    with progress_bar(progress) as bar:
        task = bar.add_task("finite nets (forward pass)", total=math.ceil(b / chunk))
        for start in range(0, b, chunk):
            nb = min(chunk, b - start)
            h = x @ torch.randn((nb, n0, n), **kw) / math.sqrt(n0)  # (nb, m, n)
            for _ in range(d - 1):
                h = mult * (activation(h) @ torch.randn((nb, n, n), **kw))
            a = activation(h)
            out[start : start + nb] = (gain / n) * (a @ a.transpose(-1, -2))
            bar.advance(task)
    return out
