"""Neural Tangents side of ``benchmarks.empirical_ntk``: ``empirical_ntk_fn`` on given weights.

Run by the *Neural Tangents* Python (never a widelimit dependency; imports neither widelimit
nor torch).  One JSON command a line on stdin, one JSON reply a line on stdout:

* ``{"cmd": "setup", "arch": "mlp"|"cnn", "weights": "w.npz", "x": "x.npy", "impl": 1|2|3}``:
  the same network as the torch side (torch layouts: Linear ``W (out, in)``, Conv ``OIHW``,
  NCHW inputs), ``empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=impl)``,
  compiled ahead of time for ``x`` (compile time not in the timings);
* ``{"cmd": "time"}``: one call on ``(x, x)``, blocked until ready; ``{"seconds": ...}``;
* ``{"cmd": "save", "out": "k.npy"}``: the last kernel, ``(N, N)``;
* ``{"cmd": "quit"}``.

``argv[1] == "1"`` turns on float64 (``jax_enable_x64``), for the tests.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    import jax

    if len(sys.argv) > 1 and sys.argv[1] == "1":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np

    def mlp(p, x):
        n = len(p) // 2
        for i in range(n):
            x = x @ p[f"w{i}"].T + p[f"b{i}"]
            if i < n - 1:
                x = jax.nn.relu(x)
        return x

    def cnn(p, x):
        n = len(p) // 2 - 1
        for i in range(n):
            x = jax.lax.conv_general_dilated(
                x, p[f"w{i}"], (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NCHW", "OIHW", "NCHW")
            )
            x = jax.nn.relu(x + p[f"b{i}"][None, :, None, None])
        x = x.mean((2, 3))
        return x @ p[f"w{n}"].T + p[f"b{n}"]

    kernel = params = x = out = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "setup":
                w = np.load(cmd["weights"])
                params = {k: jnp.asarray(w[k]) for k in w.files}
                x = jnp.asarray(np.load(cmd["x"]))
                f = {"mlp": mlp, "cnn": cnn}[cmd["arch"]]
                fn = nt.empirical_ntk_fn(
                    f, trace_axes=(), vmap_axes=0, implementation=int(cmd["impl"])
                )
                t0 = time.perf_counter()
                kernel = jax.jit(fn).lower(x, x, params).compile()
                msg = {"ok": True, "compile_seconds": time.perf_counter() - t0}
            elif cmd["cmd"] == "time":
                t0 = time.perf_counter()
                out = jax.block_until_ready(kernel(x, x, params))
                msg = {"seconds": time.perf_counter() - t0}
            elif cmd["cmd"] == "save":
                n = out.shape[0]
                np.save(cmd["out"], np.asarray(out).reshape(n, out.shape[1]))
                msg = {"ok": True}
            elif cmd["cmd"] == "quit":
                break
            else:
                msg = {"error": f"unknown command {cmd['cmd']!r}"}
        except Exception as err:  # reported to the driver, which skips the row
            msg = {"error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
