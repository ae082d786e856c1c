"""Resume after SIGKILL gives identical bytes; a 2-process LocalCluster gives the same kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from widelimit.layers import Dense, Erf, ReLU, serial
from widelimit.scale import compute_kernel, load_kernel

torch.set_num_threads(1)

# Child job: a fixed net and data; each tile write is slowed down so the parent
# can kill the process while some, but not all, tiles are recorded.
_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    torch.set_num_threads(1)
    import widelimit.scale.store as st
    from widelimit.layers import Dense, ReLU, serial
    from widelimit.scale import compute_kernel

    path, delay = sys.argv[1], float(sys.argv[2])
    orig = st.KernelStore.write_tile
    def slow(self, tile, arrays):
        time.sleep(delay)
        orig(self, tile, arrays)
    st.KernelStore.write_tile = slow
    net = serial(Dense(64, 1.4, 0.1), ReLU(), Dense(64, 1.4, 0.1), ReLU(), Dense(1))
    x = torch.randn(70, 9, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    out = compute_kernel(net, x, store=path, tile=12, scheduler="sync", progress=False)
    print(json.dumps({"computed": out.run.tiles_computed, "skipped": out.run.tiles_skipped}))
    """
)


def _run(script, path, delay) -> dict:
    res = subprocess.run(
        [sys.executable, str(script), str(path), str(delay)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_sigkill_then_resume_gives_identical_bytes(tmp_path) -> None:
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    killed = tmp_path / "killed.zarr"
    n_tiles = 6 * 7 // 2  # ceil(70/12) = 6 tile rows, upper triangle
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.15"])
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            recs = list((killed / "tiles").glob("*.json")) if (killed / "tiles").exists() else []
            if len(recs) >= 4:
                break
            assert proc.poll() is None, "the job ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # pragma: no cover - cleanup on failure
            proc.kill()
    partial = load_kernel(killed)
    assert 4 <= len(partial.done) < n_tiles  # killed mid-way
    resumed = _run(script, killed, 0.0)
    assert resumed["skipped"] == len(partial.done)
    assert resumed["computed"] == n_tiles - len(partial.done)

    # uninterrupted run of the same job (same net, data, tile, scheduler, 1 thread) here
    net = serial(Dense(64, 1.4, 0.1), ReLU(), Dense(64, 1.4, 0.1), ReLU(), Dense(1))
    x = torch.randn(70, 9, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    b = compute_kernel(
        net, x, store=tmp_path / "ref.zarr", tile=12, scheduler="sync", progress=False
    )
    a = load_kernel(killed, verify=True)
    for name in ("nngp", "ntk"):
        assert np.asarray(a[name]).tobytes() == np.asarray(b[name]).tobytes()


def test_local_cluster_two_processes_matches_in_memory(tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    net = serial(Dense(64, 1.3, 0.2), Erf(), Dense(64, 1.3, 0.2), ReLU(), Dense(1))
    x1 = torch.randn(45, 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    x2 = torch.randn(22, 6, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        sym = compute_kernel(net, x1, store=tmp_path / "s.zarr", tile=10, scheduler=client,
                             progress=False)  # fmt: skip
        cross = compute_kernel(net, x1, x2, store=tmp_path / "c.zarr", tile=7, scheduler=client,
                               progress=False)  # fmt: skip
        # both workers took part
        who = client.run(lambda dask_worker: len(dask_worker.data) >= 0)
        assert len(who) == 2
    assert sym.run.scheduler.startswith("dask.distributed") and sym.run.tiles_computed == 15
    k = net.kernel(x1)
    np.testing.assert_allclose(np.asarray(sym.nngp), k.nngp.numpy(), atol=1e-12)
    off = ~np.eye(45, dtype=bool)  # ReLU NTK diagonal: arccos-limited, see test_scale.py
    np.testing.assert_allclose(np.asarray(sym.ntk)[off], k.ntk.numpy()[off], atol=1e-12)
    kc = net.kernel(x1, x2)
    np.testing.assert_allclose(np.asarray(cross.nngp), kc.nngp.numpy(), atol=1e-12)
    np.testing.assert_allclose(np.asarray(cross.ntk), kc.ntk.numpy(), atol=1e-12)
    # local threads agree to rounding (workers may run BLAS with other thread counts)
    local = compute_kernel(net, x1, x2, store=tmp_path / "l.zarr", tile=7, progress=False)
    np.testing.assert_allclose(np.asarray(local.ntk), np.asarray(cross.ntk), rtol=0, atol=1e-14)
