"""Every bad input to the CLI gets one line on stderr and exit status 2 (docs/errors.md, "Errors and
guarantees"); deprecated flags still work with a one-line notice; --debug shows the traceback."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from widelimit.cli import app

runner = CliRunner()
NET = "Dense(16, w_std=1.4, b_std=0.1) -> Erf -> Dense(1)"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    g = np.random.default_rng(0)
    x = g.normal(size=(30, 4))
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", np.sin(x[:, 0]))
    np.save(d / "x3.npy", g.normal(size=(5, 3)))
    np.save(d / "xint.npy", g.integers(0, 5, size=(30, 4)))
    np.save(d / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(d / "objects.npy", np.array([{"a": 1}, [2]], dtype=object), allow_pickle=True)
    np.save(d / "empty.npy", np.zeros((0, 4)))
    xn = x.copy()
    xn[3, 1] = np.nan
    np.save(d / "nan.npy", xn)
    (d / "text.csv").write_text("1.0,2.0\n3.0,abc\n")
    (d / "header.csv").write_text("a,b\n1,2\n")
    (d / "a_file").write_text("not a directory")
    return d


def _fails(args, *, code=2) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == code, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("widelimit: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# (arguments relative to the fixture directory, words the one line must contain)
BAD_INPUTS = [
    (["kernel", "--x1", "missing.npy"], ["--x1", "not a file nor a built-in"]),
    (["kernel", "--x1", "{d}/text.csv"], ["--x1", "every cell must be a number", "abc"]),
    (["kernel", "--x1", "{d}/header.csv"], ["without a header row"]),
    (["kernel", "--x1", "{d}/strings.npy"], ["--x1", "strings"]),
    (["kernel", "--x1", "{d}/objects.npy"], ["--x1", "Python objects"]),
    (["kernel", "--x1", "{d}/empty.npy"], ["--x1", "non-empty"]),
    (["kernel", "--x1", "{d}/nan.npy", "--net", NET], ["non-finite", "(3, 1)"]),
    (["kernel", "--x1", "{d}/x.npy", "--x2", "{d}/x3.npy", "--net", NET], ["per-example shape"]),
    (["kernel", "--x1", "iris", "--device", "cuda"], ["--device", "CUDA is not available"]),
    (["kernel", "--x1", "iris", "--device", "gpu0"], ["--device", "not a torch device"]),
    (["kernel", "--x1", "iris", "--store", "{d}/a_file/k.zarr"], ["cannot be created"]),
    (["kernel", "--x1", "iris", "--n-rows", "-5"], ["--n-rows", "greater than or equal to 1"]),
    (["kernel", "--x1", "iris", "--n-rows", "0"], ["--n-rows"]),
    (["kernel", "--x1", "iris", "--store", "{d}/t.zarr", "--tile", "0"], ["--tile"]),
    (["kernel", "--net", "Dense(3) -> Nope"], ["--net", "unknown layer 'Nope'"]),
    (["kernel", "--net", "Dense(__import__('os'))"], ["--net", "literal"]),
    (["kernel", "--x1", "digits", "--n-rows", "3", "--input-shape", "1,8,8"], ["Flatten"]),
    (["kernel", "--x1", "iris", "--input-shape", "0,4"], ["--input-shape", "positive"]),
    (["kernel", "--x1", "iris", "--dtype", "float16"], ["--dtype"]),
    (["kernel", "--x1", "iris", "--get", "cov"], ["--get", "expected nngp or ntk"]),
    (["kernel", "--bogus"], ["No such option: --bogus"]),
    (["predict", "--x-train", "{d}/x.npy", "--x-test", "{d}/x.npy"], ["--y-train"]),
    (["predict", "--y-train", "{d}/y.npy", "--x-train", "{d}/x.npy"], ["--x-test"]),
    (
        [
            "predict",
            "--y-train",
            "{d}/y.npy",
            "--x-train",
            "{d}/x.npy",
            "--x-test",
            "{d}/x.npy",
            "--kernel",
            "gp",
        ],
        ["--kernel", "nngp or ntk"],
    ),
    (
        [
            "predict",
            "--y-train",
            "{d}/y.npy",
            "--x-train",
            "{d}/x.npy",
            "--x-test",
            "{d}/x.npy",
            "--diag-reg",
            "-1",
        ],
        ["--diag-reg"],
    ),
    (
        [
            "predict",
            "--y-train",
            "{d}/x3.npy",
            "--x-train",
            "{d}/x.npy",
            "--x-test",
            "{d}/x.npy",
            "--net",
            NET,
        ],
        ["y_train"],
    ),
    (["predict", "--y-train", "{d}/y.npy", "--store", "{d}/none.zarr"], ["not a widelimit"]),
    (["store-info", "{d}/none.zarr"], ["not a widelimit kernel store"]),
    (["demo", "--seeds", "0"], ["--seeds"]),
    (["demo", "--widths", "0,64"], ["--widths", "positive integers"]),
    (["propagate", "--widths", "4,x"], ["--widths"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_INPUTS, ids=lambda v: " ".join(v)[:60])
def test_bad_input_is_one_line_exit_2(files, args, words) -> None:
    line = _fails([a.format(d=files) for a in args])
    for w in words:
        assert w in line, line


def test_debug_shows_the_traceback(files) -> None:
    res = runner.invoke(app, ["kernel", "--x1", str(files / "strings.npy"), "--debug"])
    assert res.exit_code != 0 and res.exception is not None
    assert "expected numbers" in str(res.exception)


def test_deprecated_flags_still_work_with_a_notice(files) -> None:
    old = runner.invoke(
        app, ["kernel", "--net", NET, "--data", str(files / "x.npy"), "--n", "7", "--json"]
    )
    assert old.exit_code == 0, old.output
    assert "--data is deprecated" in old.stderr and "--n is deprecated" in old.stderr
    new = runner.invoke(
        app, ["kernel", "--net", NET, "--x1", str(files / "x.npy"), "--n-rows", "7", "--json"]
    )
    assert json.loads(old.stdout)["nngp"] == json.loads(new.stdout)["nngp"]
    assert "deprecated" not in new.stderr
    both = _fails(["kernel", "--x1", "iris", "--data", "wine"])
    assert "--data" in both and "not both" in both


def test_user_file_is_used_whole_and_builtin_subset_is_printed(files) -> None:
    res = runner.invoke(app, ["kernel", "--net", NET, "--x1", str(files / "x.npy"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["x1_shape"] == [30, 4]
    assert "rows" not in res.stderr
    res = runner.invoke(app, ["kernel", "--net", NET, "--x1", "digits", "--json"])
    assert json.loads(res.stdout)["x1_shape"] == [200, 64]
    assert "using the first 200 of 1797 rows of the built-in 'digits'" in res.stderr


def test_integer_file_is_converted_to_float64(files) -> None:
    from widelimit.spec_text import parse_net

    res = runner.invoke(
        app, ["kernel", "--net", NET, "--x1", str(files / "xint.npy"), "--out",
              str(files / "kint"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    xi = np.load(files / "xint.npy")
    ref = parse_net(NET).kernel(torch.as_tensor(xi.astype(np.float64))).nngp.numpy()
    np.testing.assert_array_equal(np.load(files / "kint" / "nngp.npy"), ref)


def test_damaged_store_is_refused_by_predict_and_store_info(files, tmp_path) -> None:
    store = tmp_path / "s.zarr"
    base = ["--net", NET, "--x1", str(files / "x.npy"), "--store", str(store), "--tile", "10"]
    ok = runner.invoke(app, ["kernel", *base, "--json"])
    assert ok.exit_code == 0, ok.output
    with open(store / "nngp" / "c" / "0" / "1", "r+b") as fh:  # 8 bytes, same size
        fh.seek(160)
        fh.write(b"\x00" * 8)
    os.truncate(store / "ntk" / "c" / "1" / "2", 100)
    predict = ["predict", "--y-train", str(files / "y.npy"), "--store", str(store)]
    line = _fails([*predict, "--kernel", "nngp"])
    assert "ntk/c/1/2 has 100 bytes" in line and str(store) in line and "--repair" in line
    line = _fails(["store-info", str(store)])
    assert "tile r1_c2" in line
    res = runner.invoke(app, ["store-info", str(store), "--verify", "--json"])
    assert res.exit_code == 2
    listed = json.loads(res.stdout)["damaged"]
    assert [b.split(" ")[1] for b in listed] == ["r0_c1", "r1_c2"]
    fixed = runner.invoke(app, ["kernel", *base, "--repair", "--json"])
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["tiles_computed"] == 2
    assert runner.invoke(app, ["store-info", str(store), "--verify"]).exit_code == 0
    res = runner.invoke(app, [*predict, "--kernel", "nngp", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["converged"]
