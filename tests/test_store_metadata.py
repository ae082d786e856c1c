"""The Zarr metadata a kernel store writes without Zarr is what Zarr itself writes and reads."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

from widelimit.scale.store import KernelStore, StoreMetadata, zarr_metadata


def _meta(dtype: str, get: tuple[str, ...]) -> StoreMetadata:
    return StoreMetadata(
        spec="spec", x1="abc", x2=None, n1=70, n2=70, input_shape=(3,), dtype=dtype, tile=32,
        get=get,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_direct_metadata_equals_zarrs_own(tmp_path, dtype):
    meta = _meta(dtype, ("nngp", "ntk"))
    attrs = {"widelimit": {"meta": meta.to_json(), "store_id": "x"}}
    group = zarr.open_group(str(tmp_path / "z"), mode="w")
    for name in meta.get:
        group.create_array(
            name, shape=(meta.n1, meta.n2), chunks=(meta.tile, meta.tile), dtype=dtype,
            compressors=None, fill_value=np.nan,
        )  # fmt: skip
    group.attrs.update(attrs)
    for rel, doc in zarr_metadata(meta, attrs).items():
        assert json.loads((tmp_path / "z" / rel).read_text()) == doc, rel


def test_store_created_without_zarr_reads_through_zarr(tmp_path):
    meta = _meta("float32", ("nngp",))
    ks = KernelStore.create(tmp_path / "k.zarr", meta)
    assert ks._raw  # the chunk layout the raw writer and reader assume
    t = ks.plan.tile_at(0, 1)
    a = np.arange(t.shape[0] * t.shape[1], dtype=np.float32).reshape(t.shape)
    ks.write_tile(t, {"nngp": a})
    arr = zarr.open_group(str(tmp_path / "k.zarr"), mode="r")["nngp"]
    assert arr.shape == (70, 70) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[t.rows, t.cols], a)
    assert np.isnan(arr[0, 0])  # a tile never written reads as NaN
    again = KernelStore.open(tmp_path / "k.zarr")
    assert again.meta == meta and again.store_id == ks.store_id
    assert dict(again.group.attrs)["widelimit"]["store_id"] == ks.store_id


_ONE_TILE_JOB = """
import json, sys, tempfile
import numpy as np
import widelimit
from widelimit.scale import compute_kernel
x = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
net = widelimit.serial(widelimit.Dense(16), widelimit.ReLU(), widelimit.Dense(1))
out = compute_kernel(net, x, store=tempfile.mkdtemp() + "/k.zarr", progress=False)
loaded = sorted(m for m in ("zarr", "dask") if m in sys.modules)
err = float(np.abs(out.ntk[:] - net.kernel(x).ntk.numpy()).max())
print(json.dumps({"loaded": loaded, "err": err}))
"""


def test_one_tile_store_job_imports_neither_zarr_nor_dask():
    """A small store job (one tile, default options: the calling thread) writes and reads
    its store without importing Zarr or Dask (each ~0.2 s CPU in a fresh process)."""
    res = subprocess.run(
        [sys.executable, "-c", _ONE_TILE_JOB], capture_output=True, text=True, check=True
    )
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["loaded"] == []
    assert got["err"] == 0.0  # the stored tile is the in-memory kernel, bit for bit
