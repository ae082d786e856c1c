"""SP / NTK / MF / μP across width: the expected log-log slopes (±0.15) and the CLI.

Slopes come from least-squares fits over ≥ 6 widths of seed-averaged metrics; the
theory values are the large-width exponents (Yang & Hu 2021): weight movement and
feature change ``n^{-1/2}`` under NTK, ``n^0`` under MF/μP; the μP coordinate check is
flat and SP's grows (``≥ n^{0.15}``) with a width-independent learning rate.
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from widelimit.cli import app
from widelimit.meanfield import layer_rules, width_study

torch.set_num_threads(1)


def _check(st):
    s = st.slopes
    assert abs(s["ntk"]["weight_movement"] + 0.5) <= 0.15
    assert abs(s["ntk"]["feature_change"] + 0.5) <= 0.15
    for p in ("mf", "mup"):
        assert abs(s[p]["weight_movement"]) <= 0.15
        assert abs(s[p]["feature_change"]) <= 0.15
        assert abs(s[p]["output_change"]) <= 0.15
    assert abs(s["mup"]["coord_check"]) <= 0.15
    assert s["standard"]["coord_check"] >= 0.15
    assert abs(s["ntk"]["output_change"]) <= 0.15  # NTK: the function still moves Θ(1)


@pytest.mark.parametrize("depth", [1, 2])
def test_width_study_slopes(depth):
    widths = (64, 128, 256, 512, 1024, 2048) if depth == 1 else (64, 128, 256, 512, 1024)
    _check(width_study(widths=widths, depth=depth, progress=False))


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 2])
def test_width_study_slopes_full_sweep(depth):
    # depth 2 stops at 4096: an 8192² float64 hidden matrix (and its copies) needs > 2 GB
    widths = tuple(64 * 2**k for k in range(8 if depth == 1 else 7))
    _check(width_study(widths=widths, depth=depth, progress=False))


def test_two_layer_mf_and_mup_share_dynamics():
    """For one hidden layer MF and μP are the same function dynamics up to a fixed
    rescaling of the input learning rate (1/d): with d = 1 the output changes agree."""
    kw = dict(widths=(64, 256), input_dim=1, n_seeds=1, seed=3, progress=False)
    mf = width_study(params=("mf",), **kw)  # same seed: same data and same random draws
    mup = width_study(params=("mup",), **kw)
    for m in ("output_change", "weight_movement", "coord_check"):
        assert mf.metrics["mf"][m] == pytest.approx(mup.metrics["mup"][m], rel=1e-10)


def test_two_layer_mf_and_mup_differ_by_input_dimension():
    """With d > 1 the input layer's effective learning rates differ by d (ηn/d vs ηn):
    the weight movement of the input layer is not the same."""
    d = 8
    kw = dict(widths=(64, 128), input_dim=d, n_seeds=1, seed=3, progress=False)
    mf = width_study(params=("mf",), **kw)
    mup = width_study(params=("mup",), **kw)
    for i in range(2):
        ratio = mup.metrics["mup"]["weight_movement"][i] / mf.metrics["mf"]["weight_movement"][i]
        assert 0.7 * d < ratio < 1.3 * d  # = d for small steps; 1 if the old claim held


def test_layer_rules_and_errors():
    assert layer_rules("ntk", "hidden", 100, 100, 0.1) == (0.1, 1.0, 0.1)
    assert layer_rules("mup", "output", 100, 100, 0.1) == (1.0, 0.01, 0.001)
    with pytest.raises(ValueError, match="param"):
        layer_rules("sp", "input", 3, 3, 0.1)
    with pytest.raises(ValueError, match="two widths"):
        width_study(widths=(64,), progress=False)
    with pytest.raises(ValueError, match="params"):
        width_study(widths=(64, 128), params=("foo",), progress=False)


def test_cli_parameterizations_json(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "parameterizations",
            "--widths",
            "64,128,256",
            "--no-progress",
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{") :])
    assert set(data["slopes"]) == {"standard", "ntk", "mf", "mup"}
    assert (tmp_path / "parameterizations.png").exists()


def test_cli_meanfield_json(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "meanfield",
            "--ns",
            "20,40",
            "--times",
            "0,0.05",
            "--d",
            "20",
            "--n-particles",
            "100",
            "--eps",
            "1e-3",
            "--batch-size",
            "16",
            "--n-seeds",
            "1",
            "--no-progress",
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{") :])
    assert len(data["pde_risk"]) == 2 and len(data["sgd_risk"]) == 2
    assert data["pde_risk"][1] < data["pde_risk"][0]
    for name in ("risk.png", "radii.png", "gap.png"):
        assert (tmp_path / name).exists()


def test_cli_bad_input():
    res = CliRunner().invoke(app, ["meanfield", "--ns", "a,b", "--no-progress"])
    assert res.exit_code != 0
    res = CliRunner().invoke(app, ["meanfield", "--delta", "1.5", "--no-progress"])
    assert res.exit_code != 0 and "delta" in res.output


def test_cli_deprecated_seed_flags():
    """--seeds (old spelling of --n-seeds): same table, one notice on stderr; hidden in --help."""
    args = ["parameterizations", "--widths", "64,128", "--no-progress", "--json"]
    old = CliRunner().invoke(app, [*args, "--seeds", "1"])
    new = CliRunner().invoke(app, [*args, "--n-seeds", "1"])
    assert old.exit_code == 0 and new.exit_code == 0, old.output
    assert json.loads(old.stdout) == json.loads(new.stdout)
    assert "--seeds is deprecated; use --n-seeds" in old.stderr
    assert "--seeds " not in CliRunner().invoke(app, ["parameterizations", "--help"]).output
