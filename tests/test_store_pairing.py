"""Train/test store pairing (issue 24, item 3) and one input scaling fitted on the training
inputs (item 4): `predict --store --test-store` refuses a test store of another net or of
reordered training data, and `--scale standardize` fits on --x1 and applies it to --x2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from widelimit.cli import app
from widelimit.layers import Dense, Erf, ReLU, serial
from widelimit.scale import StoreMismatchError, compute_kernel, posterior_mean
from widelimit.spec_text import parse_net

torch.set_num_threads(1)
runner = CliRunner()
NET = "Dense(8, w_std=1.3, b_std=0.1) -> Erf -> Dense(1)"


def _data():
    g = torch.Generator().manual_seed(5)
    xtr = torch.randn(12, 3, generator=g, dtype=torch.float64)
    xte = torch.randn(4, 3, generator=g, dtype=torch.float64)
    return xtr, xte, torch.cos(xtr[:, 0]).numpy()


def _store(path, net, x1, x2=None):
    compute_kernel(net, x1, x2, store=path, tile=5, progress=False, scheduler="sync")
    return path


def test_test_store_of_another_net_is_refused(tmp_path) -> None:
    xtr, xte, y = _data()
    net = serial(Dense(8, 1.3, 0.1), Erf(), Dense(1))
    other = serial(Dense(8, 1.3, 0.1), ReLU(), Dense(1))
    tr = _store(tmp_path / "tr.zarr", net, xtr)
    good = _store(tmp_path / "te.zarr", net, xte, xtr)
    bad = _store(tmp_path / "te_other.zarr", other, xte, xtr)
    res = posterior_mean(tr, y, test_store=good, diag_reg=1e-2)
    assert res.mean.shape == (4, 1)
    with pytest.raises(StoreMismatchError, match="another network"):
        posterior_mean(tr, y, test_store=bad, diag_reg=1e-2)


def test_test_store_of_row_shuffled_training_data_is_refused(tmp_path) -> None:
    xtr, xte, y = _data()
    net = serial(Dense(8, 1.3, 0.1), Erf(), Dense(1))
    tr = _store(tmp_path / "tr.zarr", net, xtr)
    perm = torch.as_tensor(np.random.default_rng(0).permutation(len(xtr)))
    bad = _store(tmp_path / "te.zarr", net, xte, xtr[perm])  # same rows, another order
    with pytest.raises(StoreMismatchError, match="x2 are not the train store's inputs x1"):
        posterior_mean(tr, y, test_store=bad, diag_reg=1e-2)
    np.save(tmp_path / "y.npy", y)
    res = runner.invoke(
        app,
        ["predict", "--store", str(tr), "--test-store", str(bad), "--y-train",
         str(tmp_path / "y.npy")],
    )  # fmt: skip
    assert res.exit_code != 0 and "does not belong to the train store" in res.output


def _standardize_by(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Independent route: x in the coordinates of ref's per-feature mean and sd."""
    return (x - ref.mean(axis=0)) / ref.std(axis=0)


def test_scale_standardize_fits_on_x1_and_applies_to_x2_probe_single_test_row(tmp_path) -> None:
    """The probe: one test row. Standardized on itself it would be all zeros (kernel of a
    zero input); with x1's statistics it keeps its position relative to the training data."""
    rng = np.random.default_rng(3)
    xtr = rng.normal(loc=2.0, scale=3.0, size=(20, 3))
    xte = rng.normal(loc=2.0, scale=3.0, size=(1, 3))
    np.save(tmp_path / "tr.npy", xtr)
    np.save(tmp_path / "te.npy", xte)
    res = runner.invoke(
        app,
        ["kernel", "--net", NET, "--x1", str(tmp_path / "tr.npy"), "--x2",
         str(tmp_path / "te.npy"), "--scale", "standardize", "--out", str(tmp_path / "o"),
         "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    got = np.load(tmp_path / "o" / "nngp.npy")
    a, b = _standardize_by(xtr, xtr), _standardize_by(xte, xtr)
    ref = parse_net(NET).kernel(torch.as_tensor(a), torch.as_tensor(b), get="nngp").nngp
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-12, atol=1e-14)
    zero = (
        parse_net(NET)
        .kernel(torch.as_tensor(a), torch.zeros(1, 3, dtype=torch.float64), get="nngp")
        .nngp
    )
    assert np.abs(got - zero.numpy()).max() > 1e-2  # the old per-input fit gave `zero`


def test_scaling_recorded_in_train_store_pairs_the_test_store(tmp_path) -> None:
    rng = np.random.default_rng(4)
    xtr = rng.normal(loc=1.0, scale=2.0, size=(12, 3))
    xte = rng.normal(loc=1.0, scale=2.0, size=(3, 3))
    y = np.sin(xtr[:, 0])
    for name, arr in (("tr", xtr), ("te", xte), ("y", y)):
        np.save(tmp_path / f"{name}.npy", arr)
    tr, te, te_own = (str(tmp_path / n) for n in ("tr.zarr", "te.zarr", "te_own.zarr"))
    base = ["kernel", "--net", NET, "--tile", "5", "--no-progress", "--json"]
    f = {n: str(tmp_path / f"{n}.npy") for n in ("tr", "te", "y")}
    r = runner.invoke(app, [*base, "--x1", f["tr"], "--scale", "standardize", "--store", tr])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*base, "--x1", f["te"], "--x2", f["tr"], "--scale-from", tr,
                            "--store", te])  # fmt: skip
    assert r.exit_code == 0, r.output
    # fitted on the test rows instead: x2 (training rows) land in other coordinates
    r = runner.invoke(app, [*base, "--x1", f["te"], "--x2", f["tr"], "--scale", "standardize",
                            "--store", te_own])  # fmt: skip
    assert r.exit_code == 0, r.output

    info = runner.invoke(app, ["store-info", tr, "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["scaling"] == "standardize"

    pred = ["predict", "--store", tr, "--y-train", f["y"], "--kernel", "nngp", "--json"]
    r = runner.invoke(app, [*pred, "--test-store", te, "--diag-reg", "1e-3"])
    assert r.exit_code == 0, r.output
    mean = np.asarray(json.loads(r.stdout)["mean"])[:, 0]
    a, b = torch.as_tensor(_standardize_by(xtr, xtr)), torch.as_tensor(_standardize_by(xte, xtr))
    net = parse_net(NET)
    k, kt = net.kernel(a, get="nngp").nngp.numpy(), net.kernel(b, a, get="nngp").nngp.numpy()
    noise = 1e-3 * np.diag(k).mean()
    np.testing.assert_allclose(mean, kt @ np.linalg.solve(k + noise * np.eye(12), y), atol=1e-7)
    r = runner.invoke(app, [*pred, "--test-store", te_own])
    assert r.exit_code != 0 and "another scaling" in r.output

    r = runner.invoke(app, [*base, "--x1", f["te"], "--scale", "unit-norm", "--scale-from", tr,
                            "--store", str(tmp_path / "x.zarr")])  # fmt: skip
    assert r.exit_code != 0 and "either --scale" in r.output
