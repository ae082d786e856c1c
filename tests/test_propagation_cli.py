"""``widelimit propagate``: JSON output, tables, plots and errors."""

import json
import math

from typer.testing import CliRunner

from widelimit.cli import app

runner = CliRunner()


def test_propagate_json_and_plots(tmp_path):
    args = [
        "propagate", "--activation", "relu", "--sigma-w", "1.2", "--sigma-b", "0.1",
        "--depth", "4", "--q0", "1.5", "--widths", "32,64", "--seeds", "3",
        "--finite-depth", "2", "--sigma-b2", "0,0.1", "--json", "--out", str(tmp_path),
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
    assert out["critical_line"]["sigma_w2"] == [2.0, 2.0]
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
    res = runner.invoke(app, ["propagate", "--sigma-w", "-1", "--no-phase", "--json"])
    assert res.exit_code != 0 and "sigma_w" in res.output
