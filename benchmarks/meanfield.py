"""Mean-field benchmarks: PDE solve vs one SGD run, and the width study.

Rows: the radial PDE solve (isotropic Gaussians, d = 40, 2000 quantile particles, to
t = 1) against one SGD run at N = 1600 to the same time (ε = 5e-4, batch 128), and the
two-layer width study over widths 64…8192 (64…1024 with ``--quick``).
"""

from __future__ import annotations

import torch

from benchmarks._util import measure, parse_args, report
from widelimit.meanfield import IsotropicGaussians, solve_radial, train, width_study


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    prob = IsotropicGaussians()
    t_end = 0.25 if quick else 1.0
    n = 400 if quick else 1600
    rows = []
    sec, mem, sol = measure(
        lambda: solve_radial(prob, times=[0, t_end], n_particles=2000, progress=False)
    )
    rows.append(
        {
            "task": f"radial PDE M=2000 to t={t_end}",
            "seconds": sec,
            "peak_mb": mem,
            "result": f"R={float(sol.risk[-1]):.5f}",
        }
    )
    sec, mem, res = measure(
        lambda: train(
            prob,
            n,
            times=[0, t_end],
            eps=5e-4,
            batch_size=128,
            n_seeds=1,
            compute_risk=False,
            progress=False,
        )
    )
    rows.append(
        {
            "task": f"SGD N={n} to t={t_end} (ε=5e-4, B=128)",
            "seconds": sec,
            "peak_mb": mem,
            "result": f"{int(res.steps[-1])} steps",
        }
    )
    widths = (64, 128, 256, 512, 1024) if quick else (64, 128, 256, 512, 1024, 2048, 4096, 8192)
    sec, mem, st = measure(lambda: width_study(widths=widths, progress=False))
    rows.append(
        {
            "task": f"width study 2-layer {widths[0]}…{widths[-1]}",
            "seconds": sec,
            "peak_mb": mem,
            "result": f"NTK dW slope {st.slopes['ntk']['weight_movement']:+.2f}",
        }
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report("meanfield", run(quick=args.quick), args.json)


if __name__ == "__main__":
    main()
