"""Cost of the neural covariance SDE tools, and the exact sampler vs the forward pass.

Rows: the exact layer-by-layer sampler vs the plain batched forward pass (same law,
``d·n·m`` vs ``d·n²·m`` work per net); the PSD matrix scheme (``m = 2, 8``), the scalar
correlation SDE; and the headline finite-vs-SDE comparison (shaped ReLU ``c₊ = 0``,
``c₋ = −1``, ``ρ₀ = 0.3``, ``n = 256``, ``T ∈ {0.5, 1}``) with its KS distances.

    python -m benchmarks.sde [--json] [--quick]
"""

from __future__ import annotations

import torch

from benchmarks._util import measure, parse_args, report
from widelimit.sde import (
    ReLUDrift,
    ShapedReLU,
    compare_relu,
    finite_forward_gram,
    integrate_correlation,
    integrate_covariance,
    sample_gram,
)


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    rows: list[dict] = []
    f64 = torch.float64

    # exact sampler vs forward pass, same nets
    n, nets = (64, 200) if quick else (128, 500)
    act = ShapedReLU.shaped(0.0, -1.0, n)
    x = torch.tensor([[1.0, 0.0], [0.3, 0.954]], dtype=f64)
    phi0 = x @ x.T / 2
    kw = {"width": n, "depth": n, "n_nets": nets, "seed": gen, "progress": False}
    for name, fn in (
        ("sampler", lambda: sample_gram(phi0, act, **kw)),
        ("forward", lambda: finite_forward_gram(x, act, **kw)),
    ):
        t, mem, _ = measure(fn)
        rows.append(
            {
                "case": f"finite {name}",
                "size": f"n=d={n}, nets={nets}, m=2",
                "seconds": t,
                "peak_mb": mem,
                "per_net_ms": 1e3 * t / nets,
            }
        )

    # SDE integrators
    paths, steps = (5_000, 128) if quick else (20_000, 512)
    for m in (2, 8):
        phi = torch.eye(m, dtype=f64) * 0.7 + 0.3
        t, mem, _ = measure(
            lambda phi=phi: integrate_covariance(
                phi,
                ReLUDrift(0.0, -1.0),
                times=1.0,
                dt=1 / steps,
                n_paths=paths,
                seed=gen,
                progress=False,
            )
        )
        rows.append(
            {
                "case": f"covariance SDE m={m}",
                "size": f"paths={paths}, steps={steps}",
                "seconds": t,
                "peak_mb": mem,
                "per_net_ms": 1e3 * t / paths,
            }
        )
    t, mem, _ = measure(
        lambda: integrate_correlation(
            0.3,
            ReLUDrift(0.0, -1.0),
            times=1.0,
            dt=1 / steps,
            n_paths=10 * paths,
            seed=gen,
            progress=False,
        )
    )
    rows.append(
        {
            "case": "correlation SDE",
            "size": f"paths={10 * paths}, steps={steps}",
            "seconds": t,
            "peak_mb": mem,
            "per_net_ms": 1e3 * t / (10 * paths),
        }
    )

    # headline comparison
    width, nets, paths = (64, 2000, 20_000) if quick else (256, 20_000, 100_000)
    t, mem, cmp = measure(
        lambda: compare_relu(
            widths=(width,),
            times=(0.5, 1.0),
            n_nets=nets,
            n_paths=paths,
            dt=1 / 1024,
            seed=gen,
            progress=False,
        )
    )
    for r in cmp.rows:
        size = f"n={width}, nets={nets}, paths={paths}"
        rows.append(
            {
                "case": f"finite vs SDE T={r.T}",
                "size": size,
                "seconds": t,
                "peak_mb": mem,
                "per_net_ms": 1e3 * t / nets,
                "ks_rho": r.ks_rho,
                "ks_lognorm": r.ks_lognorm,
                "ks_noise": r.ks_noise,
            }
        )
    for r in rows:
        for k in ("ks_rho", "ks_lognorm", "ks_noise"):
            r.setdefault(k, float("nan"))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report("sde", run(quick=args.quick), args.json)


if __name__ == "__main__":
    main()
