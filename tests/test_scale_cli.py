"""CLI of the scale area (store-info, helpers for kernel/predict) and the benchmark runner."""

from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from widelimit._cli.scale import kernel_to_store, predict_from_store
from widelimit.cli import app
from widelimit.layers import Dense, Erf, serial
from widelimit.scale import load_kernel

torch.set_num_threads(1)


def _net():
    return serial(Dense(32, 1.2, 0.1), Erf(), Dense(1))


def test_kernel_to_store_then_store_info_and_predict(tmp_path, capsys) -> None:
    g = torch.Generator().manual_seed(0)
    xtr = torch.randn(60, 4, generator=g, dtype=torch.float64)
    xte = torch.randn(9, 4, generator=g, dtype=torch.float64)
    tr, te = tmp_path / "tr.zarr", tmp_path / "te.zarr"
    s = kernel_to_store(_net(), xtr, None, tr, 25, None, ("nngp", "ntk"), fmt="json")
    printed = json.loads(capsys.readouterr().out)
    assert printed["tiles_total"] == 6 and printed["tiles_computed"] == 6 == s["tiles_computed"]
    kernel_to_store(_net(), xte, xtr, te, 25, None, ("nngp", "ntk"), fmt="plain")

    res = CliRunner().invoke(app, ["store-info", str(tr), "--verify", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["shape"] == [60, 60] and info["complete"] and info["symmetric"]
    bad = CliRunner().invoke(app, ["store-info", str(tmp_path / "nope.zarr")])
    assert bad.exit_code != 0 and "not a widelimit kernel store" in bad.output

    y = np.cos(xtr[:, 0].numpy())
    np.save(tmp_path / "y.npy", y)
    out = predict_from_store(
        tr, tmp_path / "y.npy", test_store=te, diag_reg=1e-2, tol=1e-10, out=tmp_path / "pred"
    )
    assert out["converged"]
    mean = np.load(tmp_path / "pred" / "mean.npy")
    k, kt = np.asarray(load_kernel(tr).nngp), np.asarray(load_kernel(te).nngp)
    ref = kt @ np.linalg.solve(k + out["noise"] * np.eye(60), y)
    np.testing.assert_allclose(mean[:, 0], ref, atol=1e-7)


def test_benchmark_runner_records_failures(tmp_path, monkeypatch) -> None:
    import benchmarks.__main__ as bm

    assert "scale" in bm.discover() and "_util" not in bm.discover()
    ok = {"status": "ok", "seconds": 0.1, "rows": [{"a": 1.5, "b": "x"}]}
    bad = {"status": "error", "seconds": 0.2, "error": "exit code 1: boom"}
    fake = {"scale": ok, "kernels": bad}
    monkeypatch.setattr(bm, "discover", lambda: list(fake))
    monkeypatch.setattr(bm, "run_script", lambda name, quick, timeout: fake[name])
    assert bm.main(["--out", str(tmp_path), "--quick"]) == 0
    md = (tmp_path / "benchmarks.md").read_text()
    assert "| kernels | error |" in md and "boom" in md and "| 1.5 | x |" in md
    assert json.loads((tmp_path / "benchmarks.json").read_text())["kernels"]["status"] == "error"


def test_run_script_reports_a_crashing_script() -> None:
    import benchmarks.__main__ as bm

    r = bm.run_script("does_not_exist_xyz", True, timeout=60)
    assert r["status"] == "error" and "ModuleNotFoundError" in r["error"]
