"""The Zarr metadata a kernel store writes without Zarr is what Zarr itself writes and reads."""

from __future__ import annotations

import json

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
