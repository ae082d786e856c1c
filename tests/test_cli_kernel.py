"""Net-description parser and the ``widelimit kernel`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from widelimit.cli import app
from widelimit.layers import Dense, ReLU, serial
from widelimit.spec_text import load_net, parse_net

runner = CliRunner()


def test_parse_net_round_trip() -> None:
    net = parse_net("Dense(16, w_std=1.5, b_std=0.1) -> ReLU -> Dense(1)")
    assert net == serial(Dense(16, 1.5, 0.1), ReLU(), Dense(1))
    res = parse_net(
        "Dense(8) -> serial(FanOut(2), parallel(Identity(), serial(ReLU(), Dense(8))), FanInSum())"
        "\n-> Dense(1)"
    )
    x = torch.randn(3, 2, dtype=torch.float64)
    assert res.kernel(x).nngp.shape == (3, 3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Foo(3)", "unknown layer"),
        ("Dense(x)", "literal"),
        ("Dense(__import__('os'))", "literal"),
        ("Dense(3", "cannot parse"),
        ("Dense(-3)", "positive"),
        ("", "empty"),
        ("Dense(3, bogus=1)", "bad arguments"),
        ("Dense(3) ->", "'->' at line 1, column 10 has no layer after it"),
        ("A -> -> B", "two '->' with no layer between them at line 1, column 3 and line 1, col"),
        ("-> Dense(3)", "'->' at line 1, column 1 has no layer before it"),
        ("Dense(3) ->\n\n# end\n", "line 1, column 10 has no layer after it"),
    ],
)
def test_parse_net_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_net(text)


def test_parse_net_dangling_arrows_are_refused_but_line_continuations_kept() -> None:
    """Issue 24: "Dense(3) ->" and "A -> -> B" were accepted (empty parts dropped)."""
    want = serial(Dense(3), ReLU(), Dense(1))
    assert parse_net("Dense(3) ->\nReLU\n-> Dense(1)") == want
    assert parse_net("# a net\nDense(3)  # hidden\nReLU\n\nDense(1)\n") == want


def test_net_missing_file_says_no_such_file(tmp_path) -> None:
    """Issue 24: `--net missing.txt` said "cannot parse" instead of naming the missing file."""
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match=r"net file .*missing.txt' does not exist"):
        load_net(missing)
    res = runner.invoke(app, ["kernel", "--net", missing, "--x1", "iris", "--n-rows", "3"])
    assert res.exit_code != 0 and "does not exist" in res.output
    (tmp_path / "d.net").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        load_net(str(tmp_path / "d.net"))


def test_load_net_from_toml(tmp_path) -> None:
    p = tmp_path / "net.toml"
    p.write_text('net = "Dense(4) -> ReLU -> Dense(1)"\n')
    assert load_net(str(p)) == serial(Dense(4), ReLU(), Dense(1))


def test_cli_kernel_json_matches_api(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(6, 3))
    np.save(tmp_path / "x.npy", x)
    net = "Dense(8, w_std=1.4, b_std=0.1) -> ReLU -> Dense(1)"
    res = runner.invoke(
        app,
        [
            "kernel",
            "--net",
            net,
            "--data",
            str(tmp_path / "x.npy"),
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["x1_shape"] == [6, 3]
    k = parse_net(net).kernel(torch.as_tensor(x))
    np.testing.assert_allclose(np.load(tmp_path / "o" / "nngp.npy"), k.nngp.numpy(), rtol=1e-14)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "ntk.npy"), k.ntk.numpy(), rtol=1e-14)
    assert info["nngp"]["min_eig"] > 0


def test_cli_kernel_builtin_and_errors() -> None:
    res = runner.invoke(app, ["kernel", "--data", "iris", "--n", "10"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["kernel", "--net", "Dense(3) -> Nope", "--data", "iris"])
    assert res.exit_code != 0 and "unknown layer" in res.output
    res = runner.invoke(app, ["kernel", "--data", "no_such_file.npy"])
    assert res.exit_code != 0


def test_cli_kernel_store_equals_in_memory(tmp_path) -> None:
    from widelimit.scale import load_kernel

    x = np.random.default_rng(1).normal(size=(11, 3))
    np.save(tmp_path / "x.npy", x)
    net = "Dense(8, w_std=1.4, b_std=0.1) -> Erf -> Dense(1)"
    res = runner.invoke(
        app,
        ["kernel", "--net", net, "--data", str(tmp_path / "x.npy"), "--store",
         str(tmp_path / "k.zarr"), "--tile", "4", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    k = parse_net(net).kernel(torch.as_tensor(x))
    stored = load_kernel(tmp_path / "k.zarr")
    np.testing.assert_allclose(np.asarray(stored.nngp), k.nngp.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(stored.ntk), k.ntk.numpy(), rtol=1e-12, atol=1e-14)


def test_cli_kernel_input_shape_reshapes_rows() -> None:
    res = runner.invoke(
        app,
        ["kernel", "--data", "digits", "--n", "4", "--input-shape", "1,8,8", "--json",
         "--net", "Conv2d(4, 3, padding='same') -> ReLU -> Flatten -> Dense(1)"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["x1_shape"] == [4, 1, 8, 8]


def test_out_on_a_full_disk_leaves_no_truncated_npy(tmp_path, monkeypatch) -> None:
    """Issue 24: `--out` on a full disk left a truncated nngp.npy."""
    import errno

    out = tmp_path / "o"
    out.mkdir()
    old = np.arange(3.0)
    np.save(out / "nngp.npy", old)  # a previous run's file must survive
    real_save = np.save

    def full_disk(fh, arr, **kw):
        fh.write(b"\x93NUMPY" + b"\0" * 94)  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    res = runner.invoke(
        app, ["kernel", "--x1", "iris", "--n-rows", "4", "--get", "nngp", "--out", str(out)]
    )
    monkeypatch.setattr(np, "save", real_save)
    assert res.exit_code != 0
    assert "No space left on device" in res.output and "nngp.npy" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["nngp.npy"]  # no temp file left
    np.testing.assert_array_equal(np.load(out / "nngp.npy"), old)
