"""Every read of a stored tile is checked: altered, truncated and missing chunks are refused
(one line naming store, kernel, tile and the repair), and repair recomputes only those tiles."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from widelimit.layers import Dense, Erf, serial
from widelimit.scale import (
    StoreCorruptError,
    compute_kernel,
    load_kernel,
    posterior_mean,
    verify_store,
)

torch.set_num_threads(1)


def _job(tmp_path, name="k.zarr", n=25):
    net = serial(Dense(16, 1.3, 0.1), Erf(), Dense(1))
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    path = tmp_path / name
    compute_kernel(net, x, store=path, tile=10, progress=False, scheduler="sync")
    return net, x, path


def _flip(path, offset=80):
    """Change 8 bytes inside a chunk file, keeping its size."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        old = fh.read(8)
        fh.seek(offset)
        fh.write(bytes(b ^ 0x5A for b in old))


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_altered_chunk_is_refused_on_every_reader(tmp_path) -> None:
    _, x, path = _job(tmp_path)
    _flip(path / "nngp" / "c" / "0" / "1")
    k = load_kernel(path)  # opening checks records and sizes; the size is unchanged
    with pytest.raises(StoreCorruptError) as err:
        np.asarray(k.nngp)
    msg = _one_line(err)
    assert str(path) in msg and "nngp" in msg and "r0_c1" in msg and "--repair" in msg
    with pytest.raises(StoreCorruptError, match="r0_c1"):
        k.nngp[12, 3]  # lower triangle: read through the transpose of tile (0, 1)
    k.ntk[0:10, 10:20]  # the other kernel of the same tile is intact
    y = np.cos(x[:, 0].numpy())
    with pytest.raises(StoreCorruptError, match="nngp tile r0_c1"):
        posterior_mean(path, y, kernel="nngp")
    posterior_mean(path, y, kernel="ntk")  # untouched kernel still usable
    with pytest.raises(StoreCorruptError, match="r0_c1"):
        load_kernel(path, verify=True)


def test_truncated_and_missing_chunks_are_refused_at_open(tmp_path) -> None:
    _, _, path = _job(tmp_path)
    os.truncate(path / "ntk" / "c" / "1" / "2", 100)
    with pytest.raises(StoreCorruptError) as err:
        load_kernel(path)
    msg = _one_line(err)
    assert "r1_c2" in msg and "ntk/c/1/2 has 100 bytes, expected 800" in msg
    (path / "ntk" / "c" / "1" / "2").unlink()
    with pytest.raises(StoreCorruptError, match="ntk/c/1/2 is missing"):
        load_kernel(path)


def test_a_chunk_changed_after_open_is_caught_on_the_next_read(tmp_path) -> None:
    _, _, path = _job(tmp_path)
    k = load_kernel(path)
    before = np.asarray(k.ntk)  # every tile verified once
    np.testing.assert_array_equal(np.asarray(k.ntk), before)
    _flip(path / "ntk" / "c" / "0" / "0", offset=0)
    with pytest.raises(StoreCorruptError, match="r0_c0"):
        np.asarray(k.ntk)


def test_verify_lists_every_bad_tile_and_repair_recomputes_only_those(tmp_path) -> None:
    net, x, path = _job(tmp_path)
    ref = {g: np.asarray(load_kernel(path)[g]) for g in ("nngp", "ntk")}
    _flip(path / "nngp" / "c" / "0" / "1")
    os.truncate(path / "ntk" / "c" / "1" / "2", 100)
    (path / "ntk" / "c" / "2" / "2").unlink()
    bad = verify_store(path)
    assert len(bad) == 3
    assert [b.split(" ")[1] for b in bad] == ["r0_c1", "r1_c2", "r2_c2"]
    with pytest.raises(StoreCorruptError, match="and 1 more"):
        load_kernel(path)  # the size checks at open see the truncated and the missing chunk
    with pytest.raises(StoreCorruptError, match="and 2 more"):
        compute_kernel(net, x, store=path, progress=False)  # resume re-hashes: all three
    fixed = compute_kernel(net, x, store=path, repair=True, progress=False, scheduler="sync")
    assert fixed.run.tiles_computed == 3 and fixed.run.tiles_skipped == 3
    assert verify_store(path) == []
    for g in ("nngp", "ntk"):
        assert np.asarray(fixed[g]).tobytes() == ref[g].tobytes()


def test_fingerprint_leaves_out_default_fields_so_new_layer_options_keep_stores_valid() -> None:
    """A layer option added later with a default must not change existing fingerprints."""
    import dataclasses

    from widelimit.scale.store import describe_spec

    @dataclasses.dataclass(frozen=True)
    class Old:
        width: int
        w_std: float = 1.0

    @dataclasses.dataclass(frozen=True)
    class New:  # the same layer after a release added `axis`
        width: int
        w_std: float = 1.0
        axis: str = "channels"

    New.__qualname__ = Old.__qualname__
    assert describe_spec(Old(8)) == describe_spec(New(8))
    assert describe_spec(Old(8, 2.0)) == describe_spec(New(8, 2.0))
    assert describe_spec(New(8, axis="all")) != describe_spec(Old(8))
