"""The store fingerprint identifies a net's behaviour: a store made for another net is
refused on resume (issue 24, item 2), and a callable it cannot read is refused unless
the user names a version string (``widelimit.versioned``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import widelimit as wl
from widelimit.fingerprint import FingerprintError, describe_spec
from widelimit.scale import StoreMismatchError, compute_kernel

torch.set_num_threads(1)

X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _resume_is_refused(tmp_path, make_net) -> None:
    """A half-finished store of make_net(1) is refused by make_net(2), reused by make_net(1)."""
    path = tmp_path / "k.zarr"
    compute_kernel(make_net(1.0), X, store=path, tile=3, progress=False, scheduler="sync")
    again = compute_kernel(make_net(1.0), X, store=path, progress=False, scheduler="sync")
    assert again.run.tiles_computed == 0  # the same net resumes
    with pytest.raises(StoreMismatchError, match="network spec"):
        compute_kernel(make_net(2.0), X, store=path, progress=False, scheduler="sync")


def test_activation_closure_value_changed_is_refused_on_resume(tmp_path) -> None:
    def make(a: float):
        return wl.serial(wl.Dense(4), wl.Activation(lambda z: torch.tanh(a * z)), wl.Dense(1))

    _resume_is_refused(tmp_path, make)


def test_activation_global_changed_is_refused_on_resume(tmp_path) -> None:
    def make(a: float):
        scope = {"torch": torch, "a": a}
        exec("def act(z):\n    return torch.tanh(a * z)\n", scope)  # a module-level global
        return wl.serial(wl.Dense(4), wl.Activation(scope["act"]), wl.Dense(1))

    _resume_is_refused(tmp_path, make)


def test_activation_default_argument_changed_is_refused_on_resume(tmp_path) -> None:
    def make(a: float):
        def act(z, a=a):
            return torch.tanh(a * z)

        return wl.serial(wl.Dense(4), wl.Activation(act), wl.Dense(1))

    _resume_is_refused(tmp_path, make)


def test_activation_helper_called_through_a_global_is_hashed_too(tmp_path) -> None:
    def make(a: float):
        scope = {"torch": torch}
        exec(f"def helper(z):\n    return torch.tanh({a!r} * z)\n", scope)
        exec("def act(z):\n    return helper(z) + 0.0\n", scope)
        return wl.serial(wl.Dense(4), wl.Activation(scope["act"]), wl.Dense(1))

    _resume_is_refused(tmp_path, make)


def test_dual_fn_closure_changed_is_refused_on_resume(tmp_path) -> None:
    def make(a: float):
        # φ(z) = a·z: E[φ(u)φ(v)] = a²·s12 (exact, so the construction check passes)
        return wl.serial(
            wl.Dense(4),
            wl.Activation(lambda z: a * z, dual_fn=lambda q1, q2, s: a * a * s),
            wl.Dense(1),
        )

    _resume_is_refused(tmp_path, make)


def test_pos_emb_decay_closure_changed_changes_the_fingerprint() -> None:
    def layer(scale: float):
        return wl.GlobalSelfAttention(pos_emb="sum", pos_emb_decay=lambda d: torch.exp(-scale * d))

    assert describe_spec(layer(1.0)) == describe_spec(layer(1.0))
    assert describe_spec(layer(1.0)) != describe_spec(layer(2.0))


def test_tensor_fields_are_fingerprinted_by_all_their_bytes_not_their_repr() -> None:
    """repr rounds to 4 digits and elides the middle of big tensors: neither may hide a change."""
    r = torch.eye(40, dtype=torch.float64)
    r2 = r.clone()
    r2[20, 20] += 1e-12  # invisible in repr (rounded and elided)
    assert repr(r) == repr(r2)

    def layer(cov):
        return wl.GlobalSelfAttention(pos_emb="sum", pos_emb_covariance=cov)

    assert describe_spec(layer(r)) == describe_spec(layer(r.clone()))
    assert describe_spec(layer(r)) != describe_spec(layer(r2))
    assert describe_spec(np.arange(4.0)) != describe_spec(np.arange(4.0).astype(">f8"))


def test_a_users_own_layer_class_counts_by_its_methods_not_only_its_name() -> None:
    """A user's layer subclass with the same name and fields but another kernel rule."""

    def layer_class(factor: float):
        scope = {"wl": wl, "dataclasses": __import__("dataclasses"), "__name__": "user_nets"}
        exec(
            "@dataclasses.dataclass(frozen=True)\n"
            "class Mine(wl.Dense):\n"
            "    def kernel(self, *args, **kwargs):\n"
            f"        return super().kernel(*args, **kwargs) * {factor!r}\n",
            scope,
        )
        return scope["Mine"]

    a, b, a2 = layer_class(1.0), layer_class(2.0), layer_class(1.0)
    assert describe_spec(a(4)) == describe_spec(a2(4))
    assert describe_spec(a(4)) != describe_spec(b(4))
    assert describe_spec(a(4)) != describe_spec(a(5))


def test_recursive_functions_and_self_references_terminate() -> None:
    scope: dict = {"math": math}
    exec("def f(n):\n    return 1 if n <= 0 else n * f(n - 1)\n", scope)
    text = describe_spec(scope["f"])
    assert text.startswith("<fn ") and text == describe_spec(scope["f"])


def test_unreadable_callable_is_refused_unless_versioned(tmp_path) -> None:
    opaque = np.frompyfunc(math.tanh, 1, 1)  # a C-level ufunc outside numpy's own functions

    class Scaled:  # a callable object of a type the fingerprint does not know
        def __call__(self, z):
            return torch.tanh(z)

    for fn in (opaque, Scaled()):
        net = wl.serial(wl.Dense(4), wl.Activation(lambda z, fn=fn: torch.tanh(z)), wl.Dense(1))
        with pytest.raises(FingerprintError, match=r"versioned\(fn"):
            compute_kernel(net, X, store=tmp_path / "a.zarr", progress=False)
    assert not (tmp_path / "a.zarr").exists()

    def make(version):
        return wl.serial(wl.Dense(4), wl.Activation(wl.versioned(Scaled(), version)), wl.Dense(1))

    path = tmp_path / "v.zarr"
    compute_kernel(make("v1"), X, store=path, tile=3, progress=False, scheduler="sync")
    assert compute_kernel(make("v1"), X, store=path, progress=False).run.tiles_computed == 0
    with pytest.raises(StoreMismatchError, match="network spec"):
        compute_kernel(make("v2"), X, store=path, progress=False)


def test_library_functions_are_accepted_by_name() -> None:
    for fn in (torch.tanh, torch.nn.functional.gelu, torch.special.erf, np.tanh, math.tanh):
        assert describe_spec(fn) == describe_spec(fn)
    assert describe_spec(torch.tanh) != describe_spec(torch.sigmoid)
    assert describe_spec(torch.nn.Tanh()) == describe_spec(torch.nn.Tanh())


_SCRIPT = """
import math, torch, numpy as np, widelimit as wl
from widelimit.fingerprint import describe_spec
A = 1.5
NAMES = {"a", "b", "c"}
def helper(z):
    return torch.tanh(A * z) if "a" in NAMES else z
def act(z, k=np.arange(3.0)):
    return helper(z) + 0 * math.pi
net = wl.serial(wl.Dense(4), wl.Activation(act), wl.Dense(1),
                wl.GlobalSelfAttention(pos_emb="sum", pos_emb_decay=lambda d: torch.exp(-A * d)))
print(describe_spec(net))
"""


def test_fingerprint_is_the_same_in_another_process(tmp_path) -> None:
    """A store is resumed by a new process: no memory address or hash seed may leak in."""
    import contextlib
    import io
    import os
    import subprocess
    import sys

    script = tmp_path / "fp.py"
    script.write_text(_SCRIPT)
    other = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout  # fmt: skip
    here = io.StringIO()
    with contextlib.redirect_stdout(here):
        exec(compile(_SCRIPT, str(script), "exec", dont_inherit=True), {"__name__": "__main__"})
    assert "<fn __main__.act#" in other and here.getvalue() == other
