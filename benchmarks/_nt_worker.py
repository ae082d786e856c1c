"""Neural Tangents side of ``benchmarks.kernels``: a persistent worker driven over stdin.

Run by the *Neural Tangents* Python (a separate environment, never a widelimit
dependency), so it imports neither widelimit nor torch.  One JSON command a line
on stdin, one JSON reply a line on stdout:

* ``{"cmd": "setup", "layers": [...], "x": "file.npy"}``: build ``stax.serial``
  from the layer list (``["dense", width, w_std, b_std]``, ``["relu"]``,
  ``["erf"]``, ``["conv", channels, k, padding, w_std, b_std]``, ``["gap"]``,
  ``["flatten"]``), load ``x`` (NHWC for images), jit ``kernel_fn`` with ``get``
  static and warm it up;
* ``{"cmd": "time"}``: one call of NNGP+NTK of ``x`` with itself, blocked until
  ready; replies ``{"seconds": ..., "cpu_seconds": ...}`` (wall and CPU time);
* ``{"cmd": "save", "nngp": "a.npy", "ntk": "b.npy"}``: write the last result;
* ``{"cmd": "quit"}``.

Start it with ``argv[1] == "1"`` for float64 (``jax_enable_x64``).  With the environment
variable ``WIDELIMIT_NT_CPU=K`` it pins itself to CPU ``K`` before JAX is imported (so every
XLA thread inherits the pin).  ``setup`` replies with the number of threads the process has
after the warm-up call.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _build(stax, layers):
    out = []
    for spec in layers:
        kind = spec[0]
        if kind == "dense":
            _, width, w_std, b_std = spec
            out.append(stax.Dense(width, W_std=w_std, b_std=b_std))
        elif kind == "relu":
            out.append(stax.Relu())
        elif kind == "erf":
            out.append(stax.Erf())
        elif kind == "conv":
            _, ch, k, padding, w_std, b_std = spec
            out.append(stax.Conv(ch, (k, k), padding=padding.upper(), W_std=w_std, b_std=b_std))
        elif kind == "gap":
            out.append(stax.GlobalAvgPool())
        elif kind == "flatten":
            out.append(stax.Flatten())
        else:
            raise ValueError(f"unknown layer {spec!r}")
    return stax.serial(*out)


def main() -> None:
    x64 = len(sys.argv) > 1 and sys.argv[1] == "1"
    cpu = os.environ.get("WIDELIMIT_NT_CPU")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    import jax

    if x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from neural_tangents import stax

    fn = x = out = None
    reply = sys.stdout
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "setup":
                _, _, kernel_fn = _build(stax, cmd["layers"])
                fn = jax.jit(kernel_fn, static_argnames="get")
                x = jnp.asarray(np.load(cmd["x"]))
                t0 = time.perf_counter()
                out = jax.block_until_ready(fn(x, None, get=("nngp", "ntk")))
                msg = {"ok": True, "compile_seconds": time.perf_counter() - t0}
                if os.path.isdir("/proc/self/task"):
                    msg["threads"] = len(os.listdir("/proc/self/task"))
            elif cmd["cmd"] == "time":
                c0, t0 = time.process_time(), time.perf_counter()
                out = jax.block_until_ready(fn(x, None, get=("nngp", "ntk")))
                msg = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
            elif cmd["cmd"] == "save":
                np.save(cmd["nngp"], np.asarray(out.nngp))
                np.save(cmd["ntk"], np.asarray(out.ntk))
                msg = {"ok": True}
            elif cmd["cmd"] == "quit":
                break
            else:
                msg = {"error": f"unknown command {cmd['cmd']!r}"}
        except Exception as err:  # reported to the driver, which skips the workload
            msg = {"error": f"{type(err).__name__}: {err}"}
        reply.write(json.dumps(msg) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
