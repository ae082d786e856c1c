"""Cost of a numerical activation layer vs the ReLU closed form on an N×N kernel.

One MLP kernel layer: given the pre-activation kernel ``Σ`` of ``N`` inputs
(``q1 = diag Σ`` as ``(N, 1)``, ``q2`` as ``(1, N)``, ``s12 = Σ`` as ``(N, N)``),
compute ``E[φφ]`` and ``E[φ'φ']`` (NNGP and NTK factors):

* ReLU by the arc-cosine closed form (Cho & Saul 2009, eq. (6)), written inline
  here only as the yardstick;
* tanh, ELU, softplus by :func:`widelimit._quadrature.gaussian_dual`.

Two synthetic data sets of dimension 784: ``spread`` (correlations mostly in
0.3–0.7, like raw image data) and ``clustered`` (tight clusters: many
correlations above 0.95, plus exact duplicates).  ``N = 4000`` (16M entries);
``--quick`` uses ``N = 1000``.  One thread.
"""

from __future__ import annotations

import math

import torch

from benchmarks._util import measure, parse_args, report
from widelimit._quadrature import gaussian_dual


def relu_closed_form(q1: torch.Tensor, q2: torch.Tensor, s12: torch.Tensor):
    """ReLU duals: √(q1q2)/(2π)(sin θ + (π − θ) cos θ) and (π − θ)/(2π)."""
    r = torch.rsqrt(q1) * torch.rsqrt(q2)
    c = (s12 * r).clamp_(-1, 1)
    th = torch.arccos(c)
    nngp = (torch.sqrt(1 - c * c) + (math.pi - th) * c) / (2 * math.pi) / r
    return nngp, (math.pi - th) / (2 * math.pi)


ACTIVATIONS = {
    "tanh": (torch.tanh, lambda x: 1 - torch.tanh(x) ** 2),
    "elu": (
        torch.nn.functional.elu,
        lambda x: torch.where(x > 0, torch.ones_like(x), torch.exp(x.clamp_max(0))),
    ),
    "softplus": (lambda x: torch.logaddexp(x, torch.zeros_like(x)), torch.sigmoid),
}


def _data(case: str, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    d = 784
    if case == "spread":
        common = torch.randn(1, d, generator=g, dtype=torch.float64)
        amp = 0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64)
        x = 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64) + 0.7 * amp * common
    else:  # clustered: 20 centres, small spread, some exact duplicates
        centres = torch.randn(20, d, generator=g, dtype=torch.float64)
        lab = torch.randint(0, 20, (n,), generator=g)
        x = centres[lab] + 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64)
        x[1::50] = x[::50]
    # first-layer pre-activation kernel, σw² = 1, σb² = 0.1 (DESIGN.md §2)
    s = (x @ x.T / d + 0.1).to(dtype)
    q = s.diagonal().clone()
    return q[:, None], q[None, :], s


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    n = 1000 if quick else 4000
    rows = []
    for case in ("spread", "clustered"):
        for dtype in (torch.float32, torch.float64):
            q1, q2, s = _data(case, n, dtype)
            c = (s / torch.sqrt(q1 * q2)).reshape(-1)[:: max(1, n * n // 100000)]
            frac = float((c.abs() > 0.95).double().mean())
            relu_closed_form(q1, q2, s)  # warm-up
            t_relu, m_relu, _ = measure(lambda q1=q1, q2=q2, s=s: relu_closed_form(q1, q2, s), 3)
            base = {"case": case, "dtype": str(dtype).removeprefix("torch."), "N": n}
            rows.append(
                base
                | {
                    "act": "relu (closed form)",
                    "seconds": t_relu,
                    "peak_mb": m_relu,
                    "ratio": 1.0,
                    "ns_per_entry": 1e9 * t_relu / (n * n),
                    "frac_|c|>0.95": frac,
                }
            )
            for name, (fn, dfn) in ACTIVATIONS.items():

                def job(fn=fn, dfn=dfn, q1=q1, q2=q2, s=s):
                    return gaussian_dual(fn, dfn, q1, q2, s, ntk=True)

                t, mem, _ = measure(job, 2)
                rows.append(
                    base
                    | {
                        "act": f"{name} (quadrature)",
                        "seconds": t,
                        "peak_mb": mem,
                        "ratio": t / t_relu,
                        "ns_per_entry": 1e9 * t / (n * n),
                        "frac_|c|>0.95": frac,
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report("quadrature activations vs ReLU closed form", run(args.quick), args.json)


if __name__ == "__main__":
    main()
