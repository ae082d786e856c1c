"""The ``widelimit sde`` command: JSON output, plots, bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from widelimit.cli import app

runner = CliRunner()

SMALL = ["sde", "--widths", "8,16", "--times", "0.5", "--n-nets", "300", "--n-paths", "2000",
         "--dt", "0.02", "--no-progress"]  # fmt: skip


def test_sde_json_and_plots(tmp_path) -> None:
    res = runner.invoke(
        app, [*SMALL, "--activations", "tanh,quadratic", "--json", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["rho0"] == 0.3 and len(data["rows"]) == 2
    for row in data["rows"]:
        assert row["depth"] == round(0.5 * row["width"])
        assert 0 <= row["ks_rho"] <= 1 and 0 <= row["ks_lognorm"] <= 1
        assert row["finite_rho"]["q05"] <= row["finite_rho"]["q50"] <= row["finite_rho"]["q95"]
    verdicts = {r["verdict"]["name"]: r["verdict"]["stable"] for r in data["stability"]}
    assert verdicts == {"tanh": True, "quadratic": False}
    assert (tmp_path / "sde_relu_compare.png").stat().st_size > 0
    assert (tmp_path / "sde_stability.png").stat().st_size > 0


def test_sde_bad_input() -> None:
    res = runner.invoke(app, [*SMALL, "--rho0", "1.5", "--activations", ""])
    assert res.exit_code != 0 and "rho0" in res.output
    res = runner.invoke(app, [*SMALL, "--widths", "8,x"])
    assert res.exit_code != 0 and "--widths" in res.output
    res = runner.invoke(app, [*SMALL, "--sde", "ito"])
    assert res.exit_code != 0 and "sde" in res.output


def test_sde_deprecated_stability_flag() -> None:
    """--stability is the hidden old spelling of --activations: same rows, a notice on stderr."""
    args = [*SMALL, "--widths", "8", "--n-nets", "100", "--n-paths", "500", "--json"]
    old = runner.invoke(app, [*args, "--stability", "tanh"])
    new = runner.invoke(app, [*args, "--activations", "tanh"])
    assert old.exit_code == 0 and new.exit_code == 0, old.output
    assert json.loads(old.stdout) == json.loads(new.stdout)
    assert "--stability is deprecated; use --activations" in old.stderr
    assert "--stability" not in runner.invoke(app, ["sde", "--help"]).output
