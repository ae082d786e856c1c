"""``widelimit propagate``: JSON output, tables, plots and errors."""

import json
import math

import pytest
from typer.testing import CliRunner

from widelimit.cli import app

runner = CliRunner()


def test_propagate_json_and_plots(tmp_path):
    args = [
        "propagate", "--activation", "relu", "--w-std", "1.2", "--b-std", "0.1",
        "--depth", "4", "--q0", "1.5", "--widths", "32,64", "--n-seeds", "3",
        "--finite-depth", "2", "--line-b-std", "0,0.3", "--json", "--out", str(tmp_path),
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # closed forms for ReLU (written here): q¹ = σw² q0 + σb², q^{l+1} = σw² q^l/2 + σb²
    q = 1.44 * 1.5 + 0.01
    for l in range(4):
        assert math.isclose(out["trajectory"]["q"][l][0], q, rel_tol=1e-13)
        q = 1.44 * q / 2 + 0.01
    fp = out["fixed_point"]
    assert math.isclose(fp["chi1"], 0.72, rel_tol=1e-13) and fp["phase"] == "ordered"
    assert math.isclose(fp["q_star"], 0.01 / (1 - 0.72), rel_tol=1e-12)
    assert [w * w for w in out["critical_line"]["w_std"]] == pytest.approx([2.0, 2.0], rel=1e-15)
    assert set(out["finite"]["slopes"]) >= {"q_spread", "ks", "w1", "output_ks"}
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["distances.png", "histograms.png", "phase_diagram.png", "trajectories.png"]
    assert sorted(out["files"]) == sorted(str(tmp_path / n) for n in names)


def test_propagate_table_without_finite_or_phase():
    res = runner.invoke(
        app, ["propagate", "--activation", "erf", "--widths", "", "--no-phase", "--depth", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "critical line" in res.output and "fixed point" in res.output


def test_propagate_errors():
    res = runner.invoke(app, ["propagate", "--activation", "nope", "--json"])
    assert res.exit_code != 0 and "unknown activation" in res.output
    res = runner.invoke(app, ["propagate", "--widths", "64,a", "--json"])
    assert res.exit_code != 0 and "integers" in res.output
    res = runner.invoke(app, ["propagate", "--w-std", "-1", "--no-phase", "--json"])
    assert res.exit_code != 0 and "w_std" in res.output


def test_propagate_deprecated_flags_still_work(tmp_path):
    """--sigma-w/--sigma-b/--sigma-b2/--seeds: same numbers as the new flags, one notice each."""
    common = ["propagate", "--activation", "relu", "--depth", "3", "--widths", "", "--no-phase"]
    old = runner.invoke(
        app, [*common, "--sigma-w", "1.2", "--sigma-b", "0.1", "--sigma-b2", "0,0.09", "--json"]
    )
    new = runner.invoke(
        app, [*common, "--w-std", "1.2", "--b-std", "0.1", "--line-b-std", "0,0.3", "--json"]
    )
    assert old.exit_code == 0 and new.exit_code == 0, old.output
    a, b = json.loads(old.stdout), json.loads(new.stdout)
    assert a["trajectory"]["q"] == b["trajectory"]["q"]
    assert a["critical_line"]["b_std"] == pytest.approx(b["critical_line"]["b_std"], rel=1e-15)
    for flag, new_flag in (("--sigma-w", "--w-std"), ("--sigma-b", "--b-std")):
        assert f"{flag} is deprecated; use {new_flag}" in old.stderr
    assert "--sigma-b2 is deprecated" in old.stderr and not new.stderr.strip()
    assert "--sigma-w" not in runner.invoke(app, ["propagate", "--help"]).output  # hidden
