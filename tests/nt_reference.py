"""Neural Tangents 0.6.5 as an independent reference, run in its own Python (optional).

Neural Tangents lives in a separate environment (JAX; never a widelimit dependency), so the
tests drive it through a subprocess: :func:`nt_kernels` writes the inputs and a list of
networks, the NT Python builds ``stax.serial`` from them, computes NNGP and NTK in float64
and writes them back.  :data:`NT_PYTHON` is ``None`` when that environment is missing; tests
then skip (``pytest.mark.skipif(NT_PYTHON is None, ...)``).

Layer descriptions (widelimit's NCHW/NCL conventions; converted to NT's NHWC here):

* ``["dense", out, w_std, b_std, parameterization, [s_in, s_out]]``
* ``["conv", out, [k...], [stride...], padding, w_std, b_std, parameterization, [s_in, s_out]]``
  (padding ``"valid" | "same" | "circular"``)
* ``["layernorm", axis, eps]`` with ``axis`` in widelimit's spelling: ``"channels"``,
  ``"all"`` or a list of axes of the batched NCHW / NCL layout
* ``["relu"]``, ``["erf"]``, ``["flatten"]``, ``["gap"]``

``b_std = 0`` is passed to NT as ``b_std=None`` (no bias parameter), widelimit's convention.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

_CANDIDATE = Path("/root/.cache/nt-venv/bin/python")
NT_PYTHON: Path | None = _CANDIDATE if _CANDIDATE.exists() else None

_SCRIPT = r'''
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from neural_tangents import stax

def nt_axis(axis, ndim):
    """widelimit's LayerNorm axis (batched NC* layout) -> NT axes (batched N*C layout)."""
    if axis == "channels":
        return (ndim - 1,)
    if axis == "all":
        return tuple(range(1, ndim))
    out = []
    for a in axis:
        a %= ndim
        out.append(ndim - 1 if a == 1 else a - 1)
    return tuple(out)

def build(layers, ndim):
    out = []
    for spec in layers:
        kind = spec[0]
        if kind == "dense":
            _, n, w, b, par, s = spec
            out.append(stax.Dense(n, W_std=w, b_std=b or None, parameterization=par, s=tuple(s)))
        elif kind == "conv":
            _, n, k, st, pad, w, b, par, s = spec
            out.append(stax.Conv(n, tuple(k), strides=tuple(st), padding=pad.upper(), W_std=w,
                                 b_std=b or None, parameterization=par, s=tuple(s)))
        elif kind == "layernorm":
            out.append(stax.LayerNorm(axis=nt_axis(spec[1], ndim), eps=spec[2]))
        elif kind == "relu":
            out.append(stax.Relu())
        elif kind == "erf":
            out.append(stax.Erf())
        elif kind == "flatten":
            out.append(stax.Flatten())
        elif kind == "gap":
            out.append(stax.GlobalAvgPool())
        else:
            raise ValueError(spec)
    return stax.serial(*out)

work = sys.argv[1]
cases = json.load(open(work + "/cases.json"))
for i, case in enumerate(cases):
    x = np.load(f"{work}/x{i}.npy")
    x = np.moveaxis(x, 1, -1)  # NC* -> N*C
    _, _, kernel_fn = build(case, x.ndim)
    k = kernel_fn(x, None, ("nngp", "ntk"))
    np.save(f"{work}/nngp{i}.npy", np.asarray(k.nngp))
    np.save(f"{work}/ntk{i}.npy", np.asarray(k.ntk))
'''


def nt_kernels(cases: list[tuple[list, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(nngp, ntk)`` of NT for each ``(layers, x)`` (x: float64, NCHW/NCL/(N, d)), one
    subprocess for all cases.  Nets must end in a readout to ``(N, N)`` kernels."""
    if NT_PYTHON is None:  # pragma: no cover - guarded by skipif in the tests
        raise RuntimeError("the Neural Tangents environment is not installed")
    with tempfile.TemporaryDirectory() as work:
        Path(work, "cases.json").write_text(json.dumps([layers for layers, _ in cases]))
        for i, (_, x) in enumerate(cases):
            np.save(Path(work, f"x{i}.npy"), np.asarray(x, dtype=np.float64))
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
        env.pop("PYTHONPATH", None)
        subprocess.run(
            [str(NT_PYTHON), "-c", _SCRIPT, work],
            check=True,
            env=env,
            capture_output=True,
            timeout=600,
        )
        return [
            (np.load(Path(work, f"nngp{i}.npy")), np.load(Path(work, f"ntk{i}.npy")))
            for i in range(len(cases))
        ]


def run_npz_worker(
    script: str, work: Path, name: str, *, timeout: int, probe: bool = False, **arrays
):
    """Run a Neural Tangents ``script`` (argv: input ``.npz``, output ``.npz``) on ``arrays``.

    The script is written to ``work/name`` (not ``nt.py``: that name shadows a stdlib
    module) and run by the NT Python on the CPU, one thread, without our ``PYTHONPATH``.
    ``probe``: first check that Neural Tangents imports there, and skip the test if not.
    Returns the loaded output ``.npz``; a failed run fails the test with its stderr.
    """
    import pytest

    if NT_PYTHON is None:  # pragma: no cover - guarded by skipif in the tests
        raise RuntimeError("the Neural Tangents environment is not installed")
    np.savez(work / "in.npz", **arrays)
    (work / name).write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    if probe:
        imports = subprocess.run(
            [str(NT_PYTHON), "-c", "import neural_tangents"], env=env, capture_output=True
        )
        if imports.returncode != 0:  # pragma: no cover - a broken peer environment
            pytest.skip("Neural Tangents does not import in its environment")
    run = subprocess.run(
        [str(NT_PYTHON), str(work / name), str(work / "in.npz"), str(work / "out.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return np.load(work / "out.npz")


def widelimit_net(layers: list):
    """The widelimit spec of a layer list of :func:`nt_kernels` (the same network)."""
    import widelimit as wl

    out = []
    for spec in layers:
        kind = spec[0]
        if kind == "dense":
            _, n, w, b, par, s = spec
            kw = {} if tuple(s) == (1, 1) else {"width_factor": tuple(s)}
            out.append(wl.Dense(n, w_std=w, b_std=b, parameterization=par, **kw))
        elif kind == "conv":
            _, n, k, st, pad, w, b, par, s = spec
            conv = wl.Conv1d if len(k) == 1 else wl.Conv2d
            kw = {} if tuple(s) == (1, 1) else {"width_factor": tuple(s)}
            out.append(
                conv(n, tuple(k), tuple(st), pad, w_std=w, b_std=b, parameterization=par, **kw)
            )
        elif kind == "layernorm":
            axis = spec[1] if isinstance(spec[1], str) else tuple(spec[1])
            out.append(wl.LayerNorm(eps=spec[2], axis=axis))
        else:
            out.append(
                {"relu": wl.ReLU, "erf": wl.Erf, "flatten": wl.Flatten, "gap": wl.GlobalAvgPool}[
                    kind
                ]()
            )
    return wl.serial(*out)
