"""Tiled kernels (widelimit.scale): tiled == in-memory, resume, refusal of mismatched stores.

Error model for "tiled == in-memory": a tile evaluates the same closed-form
recursion on the same pairs, so the only difference is the rounding of the
input Gram matrix (BLAS blocks sums differently for a block than for the whole
matrix): a few ulp, i.e. ≤ 1e-12 absolute for O(1) kernels in float64.  The
one exception is an ill-conditioned core formula: the ReLU NTK on the diagonal
uses arccos(c) at c ≈ 1, where a rounding δc of the Gram entry becomes
δθ ≈ √(2δc) ≈ 2e-8 (see test_relu_diagonal_is_arccos_limited).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr

from widelimit.layers import Dense, Erf, FanInSum, FanOut, Identity, ReLU, parallel, serial
from widelimit.scale import (
    StoreCorruptError,
    StoreMismatchError,
    compute_kernel,
    load_kernel,
    tile_plan,
)

torch.set_num_threads(1)


def _x(n: int, d: int = 7, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _fc(act=Erf) -> object:
    return serial(Dense(64, 1.3, 0.2), act(), Dense(64, 1.3, 0.2), act(), Dense(1))


def _residual() -> object:
    block = serial(FanOut(2), parallel(Identity(), serial(Erf(), Dense(32, 1.0, 0.1))), FanInSum())
    return serial(Dense(32, 1.2, 0.1), block, block, Erf(), Dense(1))


def _assert_close(stored, k, tol=1e-12) -> None:
    for name in ("nngp", "ntk"):
        a, b = np.asarray(getattr(stored, name)), getattr(k, name).numpy()
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=name)


# ------------------------------------------------------------------ tile plan
def test_tile_plan_covers_upper_triangle_exactly_once() -> None:
    n, t = 23, 5
    plan = tile_plan(n, n, t, symmetric=True)
    cover = np.zeros((n, n), int)
    for tile in plan.tiles():
        assert tile.i <= tile.j
        cover[tile.rows, tile.cols] += 1
    assert cover.max() == 1  # no entry computed twice
    assert ((cover + cover.T) > 0).all()  # every entry computed, or its transpose is
    assert cover[np.tril_indices(n, -5)].sum() == 0  # nothing below the diagonal tiles
    assert len(plan) == len(plan.tiles()) == 5 * 6 // 2
    rect = tile_plan(23, 9, 5, symmetric=False)
    assert len(rect) == 5 * 2 and sum(t.entries for t in rect.tiles()) == 23 * 9


# --------------------------------------------------------- tiled == in memory
@pytest.mark.parametrize("make_net", [_fc, _residual], ids=["fc_erf", "residual"])
def test_tiled_equals_in_memory_symmetric(tmp_path, make_net) -> None:
    net, x = make_net(), _x(47)
    got = compute_kernel(net, x, store=tmp_path / "k.zarr", tile=10, progress=False)
    assert got.complete and got.run.tiles_computed == 15  # 5 tile rows, upper triangle
    _assert_close(got, net.kernel(x))
    # symmetric store fills the lower triangle by transposition
    k = np.asarray(got.nngp)
    np.testing.assert_array_equal(k, k.T)


def test_tiled_equals_in_memory_cross(tmp_path) -> None:
    net, x1, x2 = _fc(), _x(31, seed=1), _x(17, seed=2)
    got = compute_kernel(net, x1, x2, store=tmp_path / "k.zarr", tile=8, progress=False)
    _assert_close(got, net.kernel(x1, x2))
    np.testing.assert_allclose(got.ntk[3:29, 5:6], net.kernel(x1, x2).ntk[3:29, 5:6], atol=1e-12)


def test_relu_offdiagonal_exact_diagonal_arccos_limited(tmp_path) -> None:
    net, x = _fc(ReLU), _x(41)
    got = compute_kernel(net, x, store=tmp_path / "k.zarr", tile=9, progress=False)
    k = net.kernel(x)
    np.testing.assert_allclose(np.asarray(got.nngp), k.nngp.numpy(), atol=1e-12)
    ntk, ref = np.asarray(got.ntk), k.ntk.numpy()
    off = ~np.eye(len(x), dtype=bool)
    np.testing.assert_allclose(ntk[off], ref[off], atol=1e-12)
    # diagonal: arccos at c = 1 ± few ulp -> δθ ≲ √(2·8·eps) ≈ 6e-8 per layer (module doc)
    np.testing.assert_allclose(np.diag(ntk), np.diag(ref), atol=1e-6)


def test_cnn_gap_tiled_equals_in_memory(tmp_path) -> None:
    from widelimit.layers.conv import Conv2d
    from widelimit.layers.pooling import GlobalAvgPool

    conv = Conv2d(8, 3, padding="same", w_std=1.3, b_std=0.1)
    net = serial(conv, Erf(), GlobalAvgPool(), Dense(1))
    x = torch.randn(13, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = compute_kernel(net, x, store=tmp_path / "k.zarr", tile=4, progress=False)
    assert got.meta.input_shape == (2, 4, 4)
    assert got.run.memory.per_pair == 16 * 16  # full spatial layout tracked (GAP)
    _assert_close(got, net.kernel(x))


def test_sync_scheduler_and_resume_skips_done_tiles(tmp_path) -> None:
    net, x = _fc(), _x(30)
    a = compute_kernel(net, x, store=tmp_path / "k.zarr", tile=7, scheduler="sync", progress=False)
    b = compute_kernel(net, x, store=tmp_path / "k.zarr", progress=False)  # stored tile reused
    assert b.meta.tile == 7 and b.run.tiles_computed == 0
    assert b.run.tiles_skipped == a.run.tiles_total
    np.testing.assert_array_equal(np.asarray(a.ntk), np.asarray(b.ntk))


def test_incomplete_store_refuses_reads_of_missing_tiles(tmp_path) -> None:
    net, x = _fc(), _x(20)
    got = compute_kernel(net, x, store=tmp_path / "k.zarr", tile=6, progress=False)
    rec = tmp_path / "k.zarr" / "tiles" / "r1_c2.json"
    rec.unlink()  # as if killed before this tile finished
    partial = load_kernel(tmp_path / "k.zarr")
    assert not partial.complete
    np.testing.assert_array_equal(partial.nngp[0:6, :], np.asarray(got.nngp)[0:6, :])
    with pytest.raises(ValueError, match=r"tile \(1, 2\).*not computed yet"):
        partial.nngp[6:12, 12:18]
    with pytest.raises(ValueError, match="not computed yet"):
        partial.nngp[12:18, 6:12]  # lower triangle reads the transpose of (1, 2)


# ------------------------------------------------------------ refusal / errors
def test_mismatched_net_data_dtype_tile_are_refused(tmp_path) -> None:
    path = tmp_path / "k.zarr"
    net, x = _fc(), _x(20)
    compute_kernel(net, x, store=path, tile=6, progress=False)
    cases = [
        (dict(net=_fc(ReLU)), "network spec"),
        (
            dict(net=serial(Dense(64, 1.3, 0.2), Erf(), Dense(64, 1.3, 0.21), Erf(), Dense(1))),
            "network spec",
        ),
        (dict(x1=x + 1e-9), "data x1"),
        (dict(x1=x.float()), "dtype"),
        (dict(x2=_x(20, seed=5)), "data x2"),
        (dict(tile=5), "tile size"),
        (dict(get="nngp"), "requested kernels"),
    ]
    for change, what in cases:
        args = dict(net=net, x1=x, x2=None, tile=6, get=("nngp", "ntk")) | change
        with pytest.raises(StoreMismatchError, match=what):
            compute_kernel(
                args["net"], args["x1"], args["x2"], store=path, tile=args["tile"],
                get=args["get"], progress=False,
            )  # fmt: skip
    # overwrite=True discards the old store
    out = compute_kernel(_fc(ReLU), x, store=path, tile=6, overwrite=True, progress=False)
    assert out.run.tiles_computed == out.run.tiles_total


def test_corrupt_record_and_data_are_detected_and_repaired(tmp_path) -> None:
    path = tmp_path / "k.zarr"
    net, x = _fc(), _x(25)
    ref = np.asarray(compute_kernel(net, x, store=path, tile=6, progress=False).ntk)
    rec = path / "tiles" / "r0_c3.json"
    good_text = rec.read_text()
    rec.write_text(good_text[:-7])  # truncated JSON
    with pytest.raises(StoreCorruptError, match=r"r0_c3\.json: unreadable"):
        load_kernel(path)
    with pytest.raises(StoreCorruptError, match="repair=True"):
        compute_kernel(net, x, store=path, tile=6, progress=False)
    # a record that parses but claims other rows
    bad = json.loads(good_text) | {"r1": 5}
    rec.write_text(json.dumps(bad))
    with pytest.raises(StoreCorruptError, match="does not match"):
        load_kernel(path)
    rec.write_text(good_text)
    # silently changed data: caught by the checksum in the record
    arr = zarr.open_array(str(path / "ntk"), mode="r+")
    arr[7, 13] = arr[7, 13] + 1e-9
    load_kernel(path)  # record-only check passes ...
    with pytest.raises(StoreCorruptError, match="ntk data does not match its checksum"):
        load_kernel(path, verify=True)
    fixed = compute_kernel(net, x, store=path, tile=6, repair=True, progress=False)
    assert fixed.run.tiles_computed == 1
    np.testing.assert_array_equal(np.asarray(fixed.ntk), ref)


def test_input_errors(tmp_path) -> None:
    from widelimit.layers.conv import Conv2d

    x = _x(10)
    with pytest.raises(TypeError, match="`net`"):
        compute_kernel("Dense(1)", x, store=tmp_path / "a.zarr")
    with pytest.raises(ValueError, match="`get`"):
        compute_kernel(_fc(), x, store=tmp_path / "a.zarr", get="cov")
    with pytest.raises(ValueError, match="`tile`"):
        compute_kernel(_fc(), x, store=tmp_path / "a.zarr", tile=0, progress=False)
    with pytest.raises(ValueError, match="same per-example shape"):
        compute_kernel(_fc(), x, _x(5, d=3), store=tmp_path / "a.zarr")
    img = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"output kernel is \(N1, N2\).*readout"):
        compute_kernel(serial(Conv2d(4, 3), Erf()), img, store=tmp_path / "b.zarr")
    with pytest.raises(ValueError, match="memory_budget"):
        compute_kernel(_fc(), _x(500), store=tmp_path / "c.zarr", tile=500, memory_budget="1MB")
    with pytest.raises(ValueError, match="tcp://host:8786"):
        compute_kernel(_fc(), x, store=tmp_path / "e.zarr", scheduler="processes")
    with pytest.raises(TypeError, match="`scheduler`"):
        compute_kernel(_fc(), x, store=tmp_path / "e.zarr", scheduler=3)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a kernel store"):
        compute_kernel(_fc(), x, store=tmp_path / "d", progress=False)
    assert not (tmp_path / "c.zarr").exists()  # refused before creating anything


def test_local_threads_start_the_largest_tiles_first() -> None:
    """The pool takes tiles in decreasing computed entries (a symmetric diagonal tile counts
    its upper triangle), so no long tile starts last beside idle workers.  n = 5, tile 2:
    (0,1) is a full 2×2 (4), the 2×2 diagonal tiles compute 3, the 2×1 edge tiles 2 and the
    1×1 corner 1; ties keep row-major order.  One worker: the write order is the start order."""
    from widelimit.scale.runners import ProgressBar, run_local

    class Recorder:
        plan = tile_plan(5, 5, 2, symmetric=True)

        def __init__(self) -> None:
            self.written: list[str] = []

        def write_tile(self, t, out) -> None:
            self.written.append(t.key)

    rec = Recorder()
    net, x = _fc(), _x(5).numpy()
    with ProgressBar(len(rec.plan), 0, 2, enabled=False) as bar:
        run_local(net, (x, {}), (None, None), ("nngp",), "cpu", rec, rec.plan.tiles(), bar,
                  "threads", 1)  # fmt: skip
    assert rec.written == ["r0_c1", "r0_c0", "r1_c1", "r0_c2", "r1_c2", "r2_c2"]


def test_local_threads_run_fewer_tiles_when_a_core_gets_busy(monkeypatch) -> None:
    """Default workers look at the busy cores again as tiles end: two tiles start at once,
    then every look finds one free core and the rest run one at a time (a tile's write
    sleeps 10 ms, so two tiles running at once overlap there)."""
    import threading
    import time

    from widelimit import _cpus, _threads
    from widelimit.scale.runners import ProgressBar, run_local

    monkeypatch.setattr(_threads, "RESAMPLE_SECONDS", 0.0)
    monkeypatch.setattr(_cpus, "free_cores", lambda ours=0: 1)

    class Gauge:
        plan = tile_plan(8, 8, 2, symmetric=True)

        def __init__(self) -> None:
            self.lock, self.now, self.peaks = threading.Lock(), 0, []

        def write_tile(self, t, out) -> None:
            with self.lock:
                self.now += 1
                self.peaks.append(self.now)
            time.sleep(0.01)
            with self.lock:
                self.now -= 1

    g = Gauge()
    with ProgressBar(len(g.plan), 0, 2, enabled=False) as bar:
        run_local(_fc(), (_x(8).numpy(), {}), (None, None), ("nngp",), "cpu", g, g.plan.tiles(),
                  bar, "threads", 2, adaptive=True)  # fmt: skip
    assert len(g.peaks) == len(g.plan) == 10
    # the first two tiles, and the (at most two) started as they ended before the first look,
    # may overlap; every later tile runs alone
    assert max(g.peaks[4:]) == 1
