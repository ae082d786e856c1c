"""The CLI's output convention (docs/cli.md), command by command.

Results (tables, JSON, result sentences) on stdout, progress/logs on stderr; piped
tables keep their natural width; ``--format``/``--json``; every ``--help`` without
``<bool>``; errors in the CLI's own words with a "did you mean"; ``widelimit kernel``
keeps what it computes.  In-process runs (typer's CliRunner: stdout and stderr are
not terminals, as when redirected to a file).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.main import get_command
from typer.testing import CliRunner

from widelimit.cli import app
from widelimit.spec_text import parse_net

runner = CliRunner()
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]
BOX = re.compile(r"[┏┃┡│└]")


def _ok(args: list[str]):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, f"{args}: {res.stdout}\n{res.stderr}"
    return res


def _table_blocks(text: str) -> list[list[str]]:
    """The box tables in ``text``: lists of their lines, from ┏ to └."""
    blocks, cur = [], None
    for line in text.splitlines():
        if line.startswith("┏"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.startswith("└"):
                blocks.append(cur)
                cur = None
    return blocks


def _assert_result_on_stdout_only(res, n_tables: int) -> None:
    tables = _table_blocks(res.stdout)
    assert len(tables) == n_tables, res.stdout
    assert not BOX.search(res.stderr), f"a table went to stderr:\n{res.stderr}"
    assert "\n\n" not in res.stderr.strip("\n"), f"blank lines in the progress log:\n{res.stderr}"
    assert "\x1b[" not in res.stderr and "\r" not in res.stderr  # no terminal control codes
    for t in tables:  # not wrapped: every line of a table has the same width
        assert len({len(line) for line in t}) == 1, "\n".join(t)


def test_every_command_has_help_without_bool_placeholders() -> None:
    assert {"kernel", "predict", "propagate", "meanfield", "parameterizations", "sde",
            "store-info", "bench", "demo", "atlas"} <= set(COMMANDS)  # fmt: skip
    for name in COMMANDS:
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, name
        assert "Usage: widelimit" in res.stdout and "<bool>" not in res.stdout, name
        assert "--json" in res.stdout, name
        if name != "bench":  # bench's result is the benchmarks' own Markdown table (or --json)
            assert "--format" in res.stdout, name


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_out")
    g = np.random.default_rng(0)
    x = g.normal(size=(10, 3))
    np.save(d / "x.npy", x[:7])
    np.save(d / "y.npy", np.sin(x[:7, 0]))
    np.save(d / "xt.npy", x[7:])
    return d


SMALL_RUNS = {
    "propagate": (["--activation", "relu", "--depth", "3", "--widths", "8,16", "--n-seeds",
                   "2", "--finite-depth", "2", "--no-phase", "--line-b-std", "0"], 4),
    "meanfield": (["--ns", "10,20", "--times", "0,0.05", "--n-particles", "50", "--n-seeds",
                   "1", "--eps", "0.01", "--batch-size", "16"], 3),
    "parameterizations": (["--widths", "8,16", "--steps", "1", "--n-seeds", "1"], 2),
    "sde": (["--widths", "4,8", "--times", "0.5", "--n-nets", "50", "--n-paths", "200",
             "--dt", "0.05", "--activations", "tanh"], 2),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_small_run_result_on_stdout_progress_on_stderr(name, tmp_path) -> None:
    args, n_tables = SMALL_RUNS[name]
    res = _ok([name, *args, "--out", str(tmp_path)])
    _assert_result_on_stdout_only(res, n_tables)
    assert "done in" in res.stderr  # plain progress lines, not bars: stderr is not a terminal
    assert "wrote " in res.stdout and "wrote " not in res.stderr


def test_finite_width_result_on_stdout_plot_logged_on_stderr(tmp_path) -> None:
    plot = tmp_path / "kurtosis.png"
    res = _ok(["finite-width", "--widths", "8,16", "--n-nets", "200", "--plot", str(plot)])
    _assert_result_on_stdout_only(res, 1)
    assert plot.is_file() and f"wrote {plot}" in res.stderr
    js = json.loads(_ok(["finite-width", "--widths", "8", "--n-nets", "200", "--json"]).stdout)
    assert {r["width"] for r in js["rows"]} == {8}


def test_kernel_predict_store_info_results_on_stdout(data, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = _ok(["kernel", "--x1", str(data / "x.npy"), "--scale", "standardize"])
    _assert_result_on_stdout_only(res, 1)
    assert "widelimit-kernels/nngp.npy" in res.stdout  # where the kernels went
    res = _ok(["predict", "--x-train", str(data / "x.npy"), "--y-train", str(data / "y.npy"),
               "--x-test", str(data / "xt.npy")])  # fmt: skip
    _assert_result_on_stdout_only(res, 1)
    _ok(["kernel", "--x1", str(data / "x.npy"), "--store", "k.zarr", "--tile", "4"])
    res = _ok(["store-info", "k.zarr"])
    _assert_result_on_stdout_only(res, 1)


def test_piped_table_is_not_wrapped_at_80_columns(data) -> None:
    store = str(data / ("a_long_directory_name_" * 4 + ".zarr"))
    res = _ok(["kernel", "--x1", str(data / "x.npy"), "--store", store, "--tile", "5"])
    (block,) = _table_blocks(res.stdout)
    rows = [line for line in block if line.startswith("│")]
    assert len(rows) == 12 and any(store in r for r in rows)  # one line per row, path whole
    assert len(block[0]) > 100


def test_formats_carry_the_same_numbers(data, tmp_path) -> None:
    base = ["kernel", "--x1", str(data / "x.npy"), "--out", str(tmp_path)]
    js = json.loads(_ok([*base, "--json"]).stdout)
    out = _ok([*base, "--format", "CSV"]).stdout
    assert out.startswith("# widelimit kernel")
    rows = list(csv.DictReader(io.StringIO(out.split("\n", 1)[1].strip())))
    assert [r["kernel"] for r in rows] == ["nngp", "ntk"]
    for r in rows:
        for key in ("mean_diag", "max_abs", "max_eig", "min_eig", "cond"):
            assert float(r[key]) == js[r["kernel"]][key]
    md = _ok([*base, "--format", "markdown"]).stdout
    assert "| kernel | shape |" in md and "|---|" in md
    plain = _ok([*base, "--format", "plain"]).stdout
    assert plain.startswith("# widelimit kernel") and not BOX.search(plain)
    both = _ok([*base, "--format", "plain", "--json"]).stdout
    assert json.loads(both)["x1_shape"] == [7, 3]  # --json wins


# ------------------------------------------------------------------ kernel keeps its output
def test_kernel_default_directory_holds_the_kernels(data, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    net = "Dense(8, w_std=1.4, b_std=0.1) -> Erf -> Dense(1)"
    res = _ok(["kernel", "--net", net, "--x1", str(data / "x.npy"), "--plot", "--json"])
    info = json.loads(res.stdout)
    k = parse_net(net).kernel(torch.as_tensor(np.load(data / "x.npy")))
    for name in ("nngp", "ntk"):
        ref = getattr(k, name).numpy()
        np.testing.assert_allclose(np.load(tmp_path / "widelimit-kernels" / f"{name}.npy"), ref,
                                   rtol=1e-14)  # fmt: skip
        np.testing.assert_allclose(info[name]["matrix"], ref, rtol=1e-14)  # small: in the JSON
        assert (tmp_path / "widelimit-kernels" / f"{name}.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "widelimit-kernels" / "kernel.json").read_text())
    assert saved["nngp"]["max_eig"] == info["nngp"]["max_eig"]
    assert set(info["files"]) == {
        f"widelimit-kernels/{f}"
        for f in ("nngp.npy", "ntk.npy", "nngp.png", "ntk.png", "kernel.json")
    }


def test_kernel_out_dash_writes_npy_and_npz_on_stdout(data) -> None:
    x = str(data / "x.npy")
    res = runner.invoke(app, ["kernel", "--x1", x, "--get", "NTK", "--out", "-"])
    assert res.exit_code == 0, res.stderr
    ntk = np.load(io.BytesIO(res.stdout_bytes))
    ref = parse_net(_default_net()).kernel(torch.as_tensor(np.load(x)), get="ntk").ntk
    np.testing.assert_allclose(ntk, ref.numpy(), rtol=1e-14)
    assert "ntk" in res.stderr  # the summary went to stderr
    res = runner.invoke(app, ["kernel", "--x1", x, "--out", "-", "--format", "csv"])
    assert res.exit_code == 0, res.stderr
    with np.load(io.BytesIO(res.stdout_bytes)) as z:
        assert sorted(z.files) == ["nngp", "ntk"]
        np.testing.assert_allclose(z["ntk"], ntk, rtol=1e-14)


def _default_net() -> str:
    from widelimit.spec_text import DEFAULT_NET

    return DEFAULT_NET


def test_kernel_json_matrix_only_for_small_kernels(tmp_path) -> None:
    res = _ok(["kernel", "--x1", "iris", "--n-rows", "101", "--get", "nngp", "--json",
               "--out", str(tmp_path), "--no-summary"])  # fmt: skip
    info = json.loads(res.stdout)
    assert "matrix" not in info["nngp"] and info["files"][0].endswith("nngp.npy")  # 10201 > 10^4
    assert "max_eig" not in info["nngp"]  # --no-summary


def test_kernel_summary_spectrum_against_numpy(monkeypatch) -> None:
    from widelimit._cli import kernel as kcli

    g = np.random.default_rng(3)
    a = g.normal(size=(40, 60))
    m = a @ a.T / 60
    ev = np.linalg.eigvalsh(m)
    full = kcli.describe(m, symmetric=True)
    np.testing.assert_allclose([full["min_eig"], full["max_eig"]], [ev[0], ev[-1]], rtol=1e-12)
    monkeypatch.setattr(kcli, "FULL_SPECTRUM_MAX", 10)  # the Lanczos route above the limit
    big = kcli.describe(m, symmetric=True)
    np.testing.assert_allclose(big["max_eig"], ev[-1], rtol=1e-10)
    assert big["min_eig"] is None and big["cond"] is None
    assert big["mean_diag"] == pytest.approx(np.trace(m) / 40, rel=1e-14)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["kernel", "--get", "nnpg"], ["--get", "did you mean 'nngp'"]),
        (["kernel", "--scale", "standardise"], ["--scale", "did you mean 'standardize'"]),
        (["kernel", "--net", "Dense(8) -> Rleu -> Dense(1)"], ["--net", "did you mean 'ReLU'"]),
        (["kernel", "--net", "Conv(8, (3, 3))"], ["did you mean 'Conv2d'"]),
        (["kernel", "--net", "Dense(8, w_sdt=1)"], ["did you mean 'w_std'"]),
        (["propagate", "--activation", "tahn"], ["--activation", "did you mean 'tanh'"]),
        (["predict", "--y-train", "y.npy", "--kernel", "gp"], ["--kernel", "'nngp'"]),
        (["kernel", "--format", "yaml"], ["--format"]),
        (["bench", "--only", "kernals"], ["--only", "did you mean 'kernels'"]),
        (["kernel", "--nrows", "5"], ["No such option: --nrows", "--n-rows"]),
    ],
)
def test_errors_name_the_option_and_the_closest_value(args, words) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.stdout
    err = res.stderr.strip()
    assert err.startswith("error:") and "\n" not in err and "usage:" not in err.lower(), err
    for w in words:
        assert w in err, err
    assert "--n," not in err and "--n)" not in err  # hidden deprecated spellings not suggested


def test_neural_tangents_spellings_are_accepted(tmp_path) -> None:
    nt = parse_net("Dense(8, W_std=1.5, b_std=0.1) -> Relu -> Dense(8) -> Erf -> Dense(8) "
                   "-> Gelu -> Dense(8) -> LeakyRelu -> Dense(1)")  # fmt: skip
    ours = parse_net("Dense(8, w_std=1.5, b_std=0.1) -> ReLU -> Dense(8) -> Erf -> Dense(8) "
                     "-> GELU -> Dense(8) -> LeakyReLU -> Dense(1)")  # fmt: skip
    assert nt == ours
    res = _ok(["kernel", "--x1", "iris", "--n-rows", "4", "--get", "NNGP,Ntk", "--dtype",
               "FLOAT64", "--json", "--out", str(tmp_path)])  # fmt: skip
    assert set(json.loads(res.stdout)) >= {"nngp", "ntk"}


def test_python_dash_m_widelimit() -> None:
    proc = subprocess.run([sys.executable, "-m", "widelimit", "--version"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("widelimit "), proc.stderr


# ------------------------------------------------------------------ progress
def test_plain_progress_when_stderr_is_not_a_terminal(capsys) -> None:
    from widelimit.progress import PlainProgress, activity, progress_bar

    with progress_bar(True) as bar:
        assert isinstance(bar, PlainProgress)  # capsys: stderr is not a terminal
        t = bar.add_task("counting", total=3)
        for _ in range(3):
            bar.advance(t)
    with activity("waiting", after=0.01):
        import time

        time.sleep(0.1)
    with activity("quick", after=5):
        pass
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert lines[0].startswith("counting: 3/3 done in") and len(lines) == 3, err
    assert lines[1] == "waiting ..." and lines[2].startswith("waiting: done in")
