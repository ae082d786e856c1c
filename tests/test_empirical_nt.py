"""Structured empirical NTK against Neural Tangents 0.6.5 ``empirical_ntk_fn`` (optional, slow).

The same weights (torch layouts) are handed to NT's own Python (benchmarks/_nt_entk_worker.py),
which builds the network in JAX and computes its empirical NTK with each of NT's three
implementations in float64; skipped when the NT environment is missing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nt_reference import NT_PYTHON
from widelimit.empirical import empirical_ntk

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NT_PYTHON is None, reason="Neural Tangents environment missing"),
]


def _nets():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
        torch.nn.Linear(8, 1),
    )  # fmt: skip
    layers = []
    for c in (2, 4, 4):
        layers += [torch.nn.Conv2d(c, 4, 3, padding=1), torch.nn.ReLU()]
    cnn = torch.nn.Sequential(
        *layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 1)
    )
    return {"mlp": (mlp.double(), (6,)), "cnn": (cnn.double(), (2, 5, 5))}


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_matches_neural_tangents(arch, tmp_path):
    model, shape = _nets()[arch]
    x = torch.randn(7, *shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mods = [m for m in model if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    arrays = {}
    for i, m in enumerate(mods):  # the worker's names: w0, b0, w1, ...
        arrays[f"w{i}"], arrays[f"b{i}"] = m.weight.detach().numpy(), m.bias.detach().numpy()
    np.savez(tmp_path / "w.npz", **arrays)
    np.save(tmp_path / "x.npy", x.numpy())
    cmds = []
    for impl in (1, 2, 3):
        cmds += [
            {"cmd": "setup", "arch": arch, "weights": str(tmp_path / "w.npz"),
             "x": str(tmp_path / "x.npy"), "impl": impl},
            {"cmd": "time"},
            {"cmd": "save", "out": str(tmp_path / f"k{impl}.npy")},
        ]  # fmt: skip
    cmds.append({"cmd": "quit"})
    env = {"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [str(NT_PYTHON), str(ROOT / "benchmarks" / "_nt_entk_worker.py"), "1"],
        input="".join(json.dumps(c) + "\n" for c in cmds),
        capture_output=True, text=True, env=env, timeout=600, check=True,
    )  # fmt: skip
    replies = [json.loads(line) for line in res.stdout.splitlines()]
    assert not [r for r in replies if "error" in r], replies
    ours = empirical_ntk(model, x).numpy()
    assert ours.std() > 1e-3  # not vacuous
    for impl in (1, 2, 3):
        theirs = np.load(tmp_path / f"k{impl}.npy")
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * np.abs(theirs).max())
