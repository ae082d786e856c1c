"""``widelimit empirical-ntk``: JSON on stdout, the saved kernel equals the API's, clear errors."""

from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from widelimit.cli import app
from widelimit.empirical import empirical_ntk

runner = CliRunner()

MODEL = """
import torch
from torch import nn


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
"""


def test_empirical_ntk_command(tmp_path):
    (tmp_path / "m.py").write_text(MODEL)
    x = np.random.default_rng(0).normal(size=(5, 4))
    np.save(tmp_path / "x.npy", x)
    res = runner.invoke(
        app,
        [
            "empirical-ntk", "--module", f"{tmp_path / 'm.py'}:make_model",
            "--x1", str(tmp_path / "x.npy"), "--dtype", "float64", "--out", str(tmp_path / "o"),
            "--json", "--verbose",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["shape"] == [5, 5] and out["strategy"] == "structured"
    assert {r["rule"] for r in out["rules"]} == {"linear"}
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()
    want = empirical_ntk(model, torch.from_numpy(x), strategy="jacobian").numpy()
    np.testing.assert_allclose(np.load(tmp_path / "o" / "ntk.npy"), want, rtol=1e-12, atol=1e-12)


def test_empirical_ntk_command_errors(tmp_path):
    (tmp_path / "m.py").write_text(MODEL + "\n\ndef not_a_model():\n    return 3\n")
    np.save(tmp_path / "x.npy", np.zeros((3, 4)))
    base = ["empirical-ntk", "--x1", str(tmp_path / "x.npy")]
    for ref, match in (
        ("m.py", "FILE.py:FUNCTION"),
        (f"{tmp_path / 'nope.py'}:f", "not a .py file"),
        (f"{tmp_path / 'm.py'}:absent", "no function 'absent'"),
        (f"{tmp_path / 'm.py'}:not_a_model", "not a torch.nn.Module"),
    ):
        res = runner.invoke(app, [*base, "--module", ref])
        assert res.exit_code == 2 and match in res.output, res.output


def test_empirical_ntk_command_store(tmp_path):
    from widelimit.scale import load_kernel

    (tmp_path / "m.py").write_text(MODEL)
    x = np.random.default_rng(1).normal(size=(7, 4))
    np.save(tmp_path / "x.npy", x)
    args = [
        "empirical-ntk", "--module", f"{tmp_path / 'm.py'}:make_model", "--dtype", "float64",
        "--x1", str(tmp_path / "x.npy"), "--store", str(tmp_path / "s"), "--batch-size", "3",
        "--json",
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["shape"] == [7, 7]
    res = runner.invoke(app, [*args[:-5], "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(
        load_kernel(tmp_path / "s").ntk[:, :], np.load(tmp_path / "o" / "ntk.npy"), rtol=1e-13
    )
