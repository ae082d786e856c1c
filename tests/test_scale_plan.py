"""Planning tiled kernels at scale (widelimit.scale.plan) and side inputs in the store.

* The planner costs O(tiles): the entries of a plan come in closed form (checked against
  enumerating the tiles and against covering the matrix entry by entry), and planning a
  10⁶-row job allocates a bounded number of bytes (tracemalloc).
* The default store path (no tile, no budget) at N = 3,000 equals the in-memory kernel.
* A store that would not fit on its disk is refused before anything is written.
* ``mask=``/``pattern=`` reach every tile: the stored kernel equals the in-memory one,
  and (masks of one common length) the kernel of the truncated signals; the store's
  fingerprint includes them.
"""

from __future__ import annotations

import json
import tracemalloc
from collections import namedtuple

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

import widelimit.scale.plan as plan_mod
from widelimit.cli import app
from widelimit.layers import Aggregate, Conv1d, Dense, Erf, GlobalAvgPool, ReLU, serial
from widelimit.scale import (
    StoreMismatchError,
    compute_kernel,
    estimate_memory,
    plan_kernel,
    tile_plan,
)
from widelimit.spec_text import load_net

torch.set_num_threads(1)


def _fc3() -> object:
    layers = []
    for _ in range(3):
        layers += [Dense(512, 1.4, 0.1), ReLU()]
    return serial(*layers, Dense(1))


# ------------------------------------------------------------------ planner cost
@pytest.mark.parametrize(
    "n1,n2,t,sym", [(23, 23, 5, True), (20, 20, 5, True), (7, 7, 7, True), (23, 9, 5, False)]
)
def test_plan_entries_closed_form_equals_enumeration(n1, n2, t, sym) -> None:
    plan = tile_plan(n1, n2, t, symmetric=sym)
    cover = np.zeros((n1, n2), int)
    for tile in plan.tiles():
        cover[tile.rows, tile.cols] += 1
        assert plan.tile_entries(tile.i, tile.j) == tile.entries
    assert cover.max() == 1
    assert plan.entries == sum(t.entries for t in plan.tiles()) == int(cover.sum())


def test_estimate_memory_with_tile_1_builds_no_tile_per_entry() -> None:
    """Regression (issue 22): sizing the store built a plan with tile=1, N²/2 ``Tile``
    objects (OOM at N = 20,000).  At N = 3,000 that was 4.5 M objects (> 500 MB)."""
    tracemalloc.start()
    est = estimate_memory(
        _fc3(), (784,), tile=1, n1=3000, n2=3000, itemsize=4, n_kernels=2, concurrent=1,
        symmetric=True,
    )  # fmt: skip
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert est.store_bytes == (3000 * 3001 // 2) * (2 * 4 + plan_mod.RECORD_BYTES)
    assert peak < 1 << 20, f"estimate_memory traced {peak} bytes"


def test_planner_for_a_million_rows_allocates_o_of_tiles() -> None:
    """Planning N = 10⁶ (no probe): bytes traced ≤ 64 per tile + 1 MiB, far from the
    10¹¹ objects of an entry-wise plan; the plan's numbers follow from its tile."""
    row = np.random.default_rng(0).standard_normal((1, 784)).astype(np.float32)
    x = np.broadcast_to(row, (10**6, 784))  # 10⁶ rows in 3 KB
    tracemalloc.start()
    p = plan_kernel(_fc3(), x, probe=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    g = -(-(10**6) // p.tile)
    assert p.tiles == g * (g + 1) // 2
    assert p.disk_bytes == p.tiles * (2 * 4 * p.tile**2 + plan_mod.RECORD_BYTES)
    assert p.eta_seconds is None and p.dtype == "float32"
    assert peak < 64 * p.tiles + (1 << 20), f"planning traced {peak} bytes for {p.tiles} tiles"


def test_plan_of_an_existing_store_counts_its_finished_tiles(tmp_path) -> None:
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    net = serial(Dense(16, 1.2, 0.1), Erf(), Dense(1))
    store = tmp_path / "k.zarr"
    compute_kernel(net, x, store=store, tile=16, progress=False)
    p = plan_kernel(net, x.numpy(), store=store)
    assert (p.tile, p.tiles, p.tiles_done, p.disk_needed) == (16, 6, 6, 0)
    assert p.seconds_per_entry is not None and p.seconds_per_entry > 0


# ------------------------------------------------------------------ default store path
def test_default_store_path_at_3000_rows_equals_memory(tmp_path) -> None:
    """Default options (auto tile, default get, local threads) on the issue's net: the tile
    covers the whole N = 3,000 kernel, so the stored kernel is bit-for-bit ``net.kernel``."""
    x = torch.randn(3000, 784, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    net = _fc3()
    out = compute_kernel(net, x, store=tmp_path / "k.zarr", progress=False)
    assert out.meta.dtype == "float32" and out.run.tiles_computed == out.run.tiles_total
    k = net.kernel(x)
    for name in ("nngp", "ntk"):
        np.testing.assert_array_equal(np.asarray(out[name]), getattr(k, name).numpy())


def test_store_that_does_not_fit_on_disk_is_refused_before_writing(tmp_path, monkeypatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(plan_mod.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 4096, 4096))
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    store = tmp_path / "k.zarr"
    with pytest.raises(ValueError, match=r"needs .* more on disk but only 4 KiB is free"):
        compute_kernel(serial(Dense(8), Erf(), Dense(1)), x, store=store, progress=False)
    assert not store.exists()


# ------------------------------------------------------------------ side inputs
def _signals(n: int, seed: int, length: int = 9) -> torch.Tensor:
    return torch.randn(n, 3, length, generator=torch.Generator().manual_seed(seed))


def _masked_net() -> object:
    conv = dict(padding="same", w_std=1.3, b_std=0.2)
    return serial(Conv1d(8, 3, **conv), ReLU(), Conv1d(8, 3, **conv), Erf(), GlobalAvgPool(),
                  Dense(1))  # fmt: skip


def _prefix_mask(lengths: torch.Tensor, length: int = 9) -> torch.Tensor:
    return torch.arange(length)[None, :] < lengths[:, None]


def _double(*ts):
    return [t.double() for t in ts]


def test_mask_in_store_equals_memory_and_truncation(tmp_path) -> None:
    """Tiles of 4 examples cut the masks with the inputs.  Error model: tiles evaluate the
    same recursion on the same pairs; the inputs' Gram differs by BLAS blocking, a few ulp
    (≤ 1e-12 absolute in float64)."""
    g = torch.Generator().manual_seed(4)
    x1, x2 = _double(_signals(11, 5), _signals(6, 6))
    m1 = _prefix_mask(torch.randint(2, 10, (11,), generator=g))
    m2 = _prefix_mask(torch.randint(2, 10, (6,), generator=g))
    net = _masked_net()
    sym = compute_kernel(net, x1, store=tmp_path / "s.zarr", tile=4, mask=m1, progress=False)
    cross = compute_kernel(
        net, x1, x2, store=tmp_path / "c.zarr", tile=4, mask=(m1, m2), progress=False
    )
    for stored, k in ((sym, net.kernel(x1, mask=m1)), (cross, net.kernel(x1, x2, mask=(m1, m2)))):
        for name in ("nngp", "ntk"):
            np.testing.assert_allclose(
                np.asarray(stored[name]), getattr(k, name).numpy(), rtol=0, atol=1e-12
            )
    # independent route: one common length ell = the net on the truncated signals
    ell = 6
    full = _prefix_mask(torch.full((11,), ell))
    trunc = compute_kernel(net, x1, store=tmp_path / "t.zarr", tile=4, mask=full, progress=False)
    want = net.kernel(x1[..., :ell])
    np.testing.assert_allclose(np.asarray(trunc.nngp), want.nngp.numpy(), rtol=1e-12, atol=1e-13)


def _graphs(n: int, nodes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, nodes, generator=g, dtype=torch.float64)
    arcs = (torch.rand(n, nodes, nodes, generator=g) < 0.4).double()
    return x, arcs * torch.rand(n, nodes, nodes, generator=g, dtype=torch.float64) + torch.eye(
        nodes
    )


def test_pattern_in_store_equals_memory_and_enters_the_fingerprint(tmp_path) -> None:
    conv = dict(padding="same", w_std=1.3, b_std=0.2)
    net = serial(Conv1d(4, 3, **conv), ReLU(), Aggregate(), Conv1d(4, 3, **conv), Erf(),
                 Aggregate(), GlobalAvgPool(), Dense(1))  # fmt: skip
    x, a = _graphs(9, 5, seed=7)
    store = tmp_path / "g.zarr"
    stored = compute_kernel(net, x, store=store, tile=4, pattern=a, progress=False)
    k = net.kernel(x, pattern=a)
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(
            np.asarray(stored[name]), getattr(k, name).numpy(), rtol=0, atol=1e-12
        )
    other = a.clone()
    other[0, 0, 1] += 1.0
    with pytest.raises(StoreMismatchError, match="data x1"):
        compute_kernel(net, x, store=store, tile=4, pattern=other, progress=False)
    # the same pattern resumes (nothing left to compute)
    again = compute_kernel(net, x, store=store, pattern=a, progress=False)
    assert again.run.tiles_computed == 0


# ------------------------------------------------------------------ CLI
def test_cli_plan_prints_json_on_stdout_and_writes_nothing(tmp_path) -> None:
    x = np.random.default_rng(8).standard_normal((5000, 784)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    store = tmp_path / "k.zarr"
    args = ["kernel", "--x1", str(tmp_path / "x.npy"), "--store", str(store), "--plan"]
    res = CliRunner().invoke(app, [*args, "--dtype", "float32", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert (info["n1"], info["dtype"], info["get"]) == (5000, "float32", ["nngp", "ntk"])
    g = -(-5000 // info["tile"])
    assert info["tiles"] == g * (g + 1) // 2 and info["fits_disk"] is True
    assert info["eta_seconds"] > 0
    assert not store.exists()


def test_cli_mask_with_and_without_store(tmp_path) -> None:
    net_text = (
        "Conv1d(8, 3, padding='same', w_std=1.3, b_std=0.2) -> ReLU -> GlobalAvgPool -> Dense(1)"
    )
    x = _signals(7, 9).double()
    m = _prefix_mask(torch.tensor([3, 9, 5, 2, 8, 9, 4]))
    np.save(tmp_path / "x.npy", x.reshape(7, -1).numpy())
    np.save(tmp_path / "m.npy", m.numpy())
    base = ["kernel", "--net", net_text, "--x1", str(tmp_path / "x.npy"), "--input-shape", "3,9",
            "--mask", str(tmp_path / "m.npy")]  # fmt: skip
    store = tmp_path / "k.zarr"
    res = CliRunner().invoke(app, [*base, "--store", str(store), "--tile", "3", "--json"])
    assert res.exit_code == 0, res.output
    from widelimit.scale import load_kernel

    want = load_net(net_text).kernel(x, mask=m)
    np.testing.assert_allclose(np.asarray(load_kernel(store).ntk), want.ntk.numpy(), atol=1e-12)
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "mem"), "--json"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "mem" / "ntk.npy"), want.ntk.numpy(), atol=1e-12)
    bad = CliRunner().invoke(app, [*base, "--x2", str(tmp_path / "x.npy")])
    assert bad.exit_code != 0 and "--mask2" in bad.output


# ------------------------------------------------------------------ store writes
def test_raw_chunk_writes_read_back_through_zarr_like_zarr_writes(tmp_path) -> None:
    """The direct chunk write (edge tiles padded with NaN) gives the bytes Zarr's own
    write gives: the same tile written both ways, compared file to file and read back."""
    from widelimit.scale.store import KernelStore

    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    net = serial(Dense(8, 1.2, 0.1), Erf(), Dense(1))
    stored = compute_kernel(net, x, store=tmp_path / "raw.zarr", tile=4, progress=False)
    ks = KernelStore.open(tmp_path / "raw.zarr")
    assert ks._raw  # the fast path was taken
    edge = ks.plan.tile_at(1, 2)  # rows 4:8, cols 8:10 (a 4×2 block of a 4×4 chunk)
    data = ks.group["ntk"][edge.rows, edge.cols]
    ref = zarr.create_array(
        str(tmp_path / "ref.zarr"), shape=(10, 10), chunks=(4, 4), dtype="float64",
        compressors=None, fill_value=np.nan,
    )  # fmt: skip
    ref[edge.rows, edge.cols] = data
    assert (tmp_path / "ref.zarr" / "c" / "1" / "2").read_bytes() == ks.chunk_path(
        "ntk", edge
    ).read_bytes()
    # tiles round the inputs' Gram differently from the whole matrix: a few ulp
    np.testing.assert_allclose(np.asarray(stored.ntk), net.kernel(x).ntk.numpy(), atol=1e-12)
    # the direct read of a raw chunk gives what Zarr reads, edge and full tiles alike
    ks.done_tiles()  # loads the records
    for t in (edge, ks.plan.tile_at(0, 1)):
        np.testing.assert_array_equal(
            ks.read_tile("ntk", t), ks.group["ntk"][t.rows, t.cols], strict=True
        )


def test_records_with_legacy_blake2_checksums_still_verify(tmp_path) -> None:
    """Stores written before the CRC-32C checksums hold BLAKE2b digests: they still
    verify, and altered data is still caught."""
    import hashlib

    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    net = serial(Dense(8, 1.2, 0.1), Erf(), Dense(1))
    store = tmp_path / "k.zarr"
    compute_kernel(net, x, store=store, tile=5, progress=False)
    for f in (store / "tiles").glob("*.json"):
        rec = json.loads(f.read_text())
        assert all(c.startswith("crc32c:") for c in rec["checksums"].values())
        g = zarr.open_group(str(store), mode="r")
        for name in rec["checksums"]:
            block = np.ascontiguousarray(g[name][rec["r0"] : rec["r1"], rec["c0"] : rec["c1"]])
            rec["checksums"][name] = hashlib.blake2b(block.data, digest_size=16).hexdigest()
        f.write_text(json.dumps(rec))
    from widelimit.scale import StoreCorruptError, load_kernel, verify_store

    assert verify_store(store) == []
    np.testing.assert_allclose(
        np.asarray(load_kernel(store).nngp), net.kernel(x).nngp.numpy(), rtol=0, atol=1e-12
    )
    arr = zarr.open_array(str(store / "nngp"), mode="r+")
    arr[0, 0] = arr[0, 0] + 1.0
    with pytest.raises(StoreCorruptError, match="does not match"):
        np.asarray(load_kernel(store).nngp)


# ------------------------------------------------------------------ threads
def test_local_tiles_share_the_cores_without_exceeding_torch_threads(monkeypatch) -> None:
    import widelimit._cpus as cpus
    import widelimit.scale.runners as runners
    from widelimit._threads import torch_threads

    monkeypatch.setattr(runners, "cores", lambda: 8)
    monkeypatch.setattr(cpus, "cores", lambda: 8)  # tile threads share the cores (_cpus)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        assert runners.concurrency(None, None, None) == 8  # one tile per core by default
        assert [runners.tile_threads(None, None, w) for w in (8, 2, 3, 16)] == [1, 4, 2, 1]
        assert runners.tile_threads(None, "sync", 1) is None
        torch.set_num_threads(1)  # the caller's limit holds
        assert runners.tile_threads(None, None, 2) == 1
        with torch_threads(3):
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ probe cache (--plan)
_NET_TEXT = "Dense(64, w_std=1.4, b_std=0.1) -> ReLU -> Dense(1)"


def _counting_loader(calls: list):
    def load(text: str):
        calls.append(text)
        return load_net(text)

    return load


def test_plan_from_text_answers_a_repeat_from_the_cache(tmp_path, monkeypatch) -> None:
    """A miss parses and probes; the repeat parses nothing and gives the same plan (its
    ETA from the first probe, with its age); another dtype or an expired probe is a miss."""
    monkeypatch.setenv("WIDELIMIT_CACHE_DIR", str(tmp_path / "cache"))
    x = np.random.default_rng(9).standard_normal((3000, 20)).astype(np.float32)
    calls: list = []
    first = plan_mod.plan_from_text(_NET_TEXT, x, tile=500, load_net=_counting_loader(calls))
    assert len(calls) == 1 and first.probe_age_seconds is None
    again = plan_mod.plan_from_text(_NET_TEXT, x, tile=500, load_net=_counting_loader(calls))
    assert len(calls) == 1, "the repeat parsed the net"
    assert 0 <= again.probe_age_seconds < 60
    assert again.seconds_per_entry == first.seconds_per_entry
    direct = plan_kernel(load_net(_NET_TEXT), x, tile=500, probe=False)
    assert _sizes(first) == _sizes(again) == _sizes(direct)
    plan_mod.plan_from_text(_NET_TEXT, x, dtype="float64", load_net=_counting_loader(calls))
    assert len(calls) == 2, "another dtype must probe again"
    monkeypatch.setattr(plan_mod, "PROBE_CACHE_MAX_AGE", -1.0)
    stale = plan_mod.plan_from_text(_NET_TEXT, x, tile=500, load_net=_counting_loader(calls))
    assert len(calls) == 3 and stale.probe_age_seconds is None


def _sizes(plan) -> dict:
    timing = ("seconds_per_entry", "eta_seconds", "probe_age_seconds", "disk_free")
    return {k: v for k, v in plan.to_dict().items() if k not in timing}


def test_plan_from_text_survives_a_damaged_cache_and_existing_stores(tmp_path, monkeypatch):
    monkeypatch.setenv("WIDELIMIT_CACHE_DIR", str(tmp_path / "cache"))
    plan_mod.probe_cache_file().parent.mkdir(parents=True)
    plan_mod.probe_cache_file().write_text("{not json")
    x = np.random.default_rng(10).standard_normal((40, 5))
    calls: list = []
    p = plan_mod.plan_from_text(_NET_TEXT, x, tile=16, load_net=_counting_loader(calls))
    assert p.seconds_per_entry > 0 and len(calls) == 1
    assert json.loads(plan_mod.probe_cache_file().read_text())  # rewritten whole
    # an existing store: its finished tiles count, so the net is planned again
    store = tmp_path / "k.zarr"
    compute_kernel(load_net(_NET_TEXT), torch.from_numpy(x), store=store, tile=16, progress=False)
    q = plan_mod.plan_from_text(_NET_TEXT, x, store=store, load_net=_counting_loader(calls))
    assert len(calls) == 2 and (q.tiles_done, q.disk_needed) == (6, 0)


_CLI_PLAN = """
import sys
from widelimit.cli import app
try:
    app({args!r})
except SystemExit as e:
    code = e.code
print("TORCH", "torch" in sys.modules, code, file=sys.stderr)
"""


def test_cli_plan_repeat_needs_no_torch(tmp_path) -> None:
    """``widelimit kernel --plan`` a second time: answered from the cache, torch never
    imported (importing it alone takes 1.4 s: the < 1 s plan of issue 22)."""
    import os
    import subprocess
    import sys

    x = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (10**6, 784))
    x[:1024] = np.random.default_rng(11).standard_normal((1024, 784))
    x.flush()
    del x
    args = ["kernel", "--net", _NET_TEXT, "--x1", str(tmp_path / "x.npy"), "--dtype",
            "float32", "--plan", "--json"]  # fmt: skip
    env = os.environ | {"WIDELIMIT_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", _CLI_PLAN.format(args=args)], capture_output=True,
            text=True, env=env, timeout=300, check=True,
        )  # fmt: skip
        runs.append((json.loads(out.stdout), out.stderr.strip().splitlines()[-1]))
    (first, err1), (second, err2) = runs
    assert err1 == "TORCH True 0" and err2 == "TORCH False 0"
    assert first["probe_age_seconds"] is None and second["probe_age_seconds"] >= 0
    assert second["n1"] == 10**6 and second["eta_seconds"] == pytest.approx(first["eta_seconds"])


def test_store_jobs_run_no_more_tiles_at_once_than_free_cores(tmp_path, monkeypatch) -> None:
    """Another process on one of two cores: one tile at a time (two tile threads would share
    the other core); every core free: two at once; a one-tile job does not look."""
    import widelimit.scale.compute as compute_mod
    import widelimit.scale.runners as runners

    monkeypatch.setattr(runners, "cores", lambda: 2)
    looked: list[int] = []
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    net = serial(Dense(16, 1.2, 0.1), Erf(), Dense(1))
    out = {}
    for free in (1, 2):
        monkeypatch.setattr(compute_mod, "free_cores", lambda f=free: looked.append(f) or f)
        res = compute_kernel(net, x, store=tmp_path / f"k{free}.zarr", tile=16, progress=False)
        out[free] = (res.run.scheduler, np.asarray(res.nngp))
    assert out[1][0].startswith("sync") and out[2][0].startswith("local threads (2 tiles")
    np.testing.assert_array_equal(out[1][1], out[2][1])
    assert looked == [1, 2]
    compute_kernel(net, x[:10], store=tmp_path / "one.zarr", tile=16, progress=False)
    assert looked == [1, 2]  # one tile: nothing to share
