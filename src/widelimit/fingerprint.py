"""Fingerprint of a network spec's *behaviour*: the text a kernel store is keyed by.

:func:`describe_spec` turns a layer tree into a canonical text that is equal for
two specs only if they compute the same kernel (up to what is listed under
"Limits" below), and stable across processes (no memory addresses).

* Layers (dataclasses): class name and every field that is not at its plain
  default (so a release adding an option with a default keeps old stores valid).
* Numbers, strings, tuples, lists, dicts, sets: exactly (``repr`` of a float
  round-trips).
* Tensors and ndarrays: dtype, shape and a BLAKE2 hash of *all* their bytes
  (never their rounded, elided ``repr``).
* Python functions (``Activation(fn)``, ``dual_fn``, ``pos_emb_decay``, ...):
  a hash of their bytecode (nested code objects included), the values in their
  closure cells, their defaults and keyword defaults, and every global name the
  code reads, each described recursively (a helper function they call is hashed
  the same way; recursion between functions is cut with a back-reference).
  Functions of torch, numpy, scipy, math and the standard library are described
  by their importable name (their closures and defaults still hashed).
* Built-in (C) functions: only those of torch, numpy, scipy, math, ``operator``
  and ``builtins``, by name.  Any other C function, or an object of a type not
  listed here, cannot be fingerprinted: :class:`FingerprintError` names where it
  sits in the spec and the remedy, :func:`versioned`.

``versioned(fn, "my-fn v2")`` wraps a callable whose behaviour cannot be read
(a C extension, a callable object of an unknown type) with a version string the
user promises to change whenever the behaviour changes; the fingerprint then
records the callable's name and that string instead of its code.

Limits: bytecode differs between Python versions, so a store made under one
Python minor version is refused under another; a module-level global that is a
*module* (``torch``, ``np``) is recorded by name, so patching a library function
at run time is not seen; attributes read from objects at call time
(``self.scale``) are seen only through the object's own fingerprint.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import functools
import hashlib
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["FingerprintError", "Versioned", "describe_spec", "versioned"]

# Packages whose Python functions are described by name (not recursed into):
# their behaviour is pinned by the installed version, and recursing into torch's
# own Python code would hash thousands of objects for nothing.
_LIBRARY_PACKAGES = frozenset(
    {
        "torch", "numpy", "scipy", "math", "cmath", "operator", "builtins", "functools",
        "itertools", "typing", "widelimit", "_operator", "_functools", "collections",
    }
)  # fmt: skip


# C-level callables described by module and name (when the module is a library's)
_OP_OVERLOAD = getattr(getattr(torch, "_ops", None), "OpOverload", None)
_BUILTIN_TYPES: tuple[type, ...] = (
    types.BuiltinFunctionType,
    np.ufunc,
    *((_OP_OVERLOAD,) if isinstance(_OP_OVERLOAD, type) else ()),
)


class FingerprintError(TypeError):
    """A part of a network spec whose behaviour cannot be fingerprinted."""


@dataclasses.dataclass(frozen=True)
class Versioned:
    """A callable with a user-given version string (see :func:`versioned`)."""

    fn: Callable[..., Any]
    version: str

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"versioned: `fn` must be callable; got {type(self.fn).__name__}")
        if not isinstance(self.version, str) or not self.version.strip():
            raise TypeError(
                f"versioned: `version` must be a non-empty string; got {self.version!r}"
            )

    @property
    def __name__(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def versioned(fn: Callable[..., Any], version: str) -> Versioned:
    """Wrap ``fn`` so that kernel stores identify it by ``version`` instead of its code.

    Use it for a callable the fingerprint cannot read (a C function outside
    torch/numpy/scipy/math, an object of an unknown type), e.g.
    ``Activation(versioned(mylib.fast_tanh, "mylib 1.3"))``.  Change the string
    whenever the callable's behaviour changes: a store made with another
    version string is refused, one made with the same string is resumed.
    """
    return Versioned(fn, version)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _array_text(kind: str, dtype: str, shape: tuple[int, ...], data: bytes | memoryview) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(data)
    return f"<{kind} {dtype} {shape} #{h.hexdigest()}>"


def _is_library(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in _LIBRARY_PACKAGES  # type: ignore[union-attr]


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    """Whether a dataclass field holds its plain (non-factory) default value."""
    if f.default is dataclasses.MISSING:
        return False
    try:
        return type(value) is type(f.default) and bool(value == f.default)
    except Exception:  # e.g. tensors: keep the field
        return False


class _Describer:
    """One description pass; ``stack`` holds the functions/containers being described."""

    def __init__(self) -> None:
        self.stack: dict[int, str] = {}
        self.path: list[str] = []

    def refuse(self, obj: Any, why: str) -> FingerprintError:
        where = " -> ".join(self.path) or "the spec"
        return FingerprintError(
            f"cannot fingerprint {why} (at {where}): a kernel store could not tell whether "
            "its behaviour changed, and might mix tiles of two different nets. Pass a "
            "Python function, or wrap the callable with a version string you change "
            "whenever its behaviour changes: widelimit.versioned(fn, 'name v1')"
        )

    def __call__(self, obj: Any, label: str) -> str:
        self.path.append(label)
        try:
            return self.describe(obj)
        finally:
            self.path.pop()

    def describe(self, obj: Any) -> str:
        if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
            return repr(obj)
        if obj is Ellipsis or isinstance(obj, torch.dtype | torch.device | np.dtype):
            return repr(obj)
        if isinstance(obj, enum.Enum):
            return f"{type(obj).__qualname__}.{obj.name}"
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            return _array_text("tensor", str(t.dtype), tuple(t.shape), raw)
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise self.refuse(obj, "a numpy array of Python objects")
            a = np.ascontiguousarray(obj)
            return _array_text("ndarray", a.dtype.str, a.shape, a.tobytes())
        if isinstance(obj, np.generic):
            return f"{obj.dtype.str}:{obj.item()!r}"
        key = id(obj)
        if key in self.stack:  # recursion (a function calling itself through a global)
            return f"<back-ref {self.stack[key]}>"
        self.stack[key] = type(obj).__qualname__
        try:
            return self._describe_compound(obj)
        finally:
            del self.stack[key]

    def _describe_compound(self, obj: Any) -> str:
        if isinstance(obj, Versioned):
            return f"<versioned {self._name(obj.fn)} {obj.version!r}>"
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            cls = type(obj)
            inner = ", ".join(
                f"{f.name}={self(getattr(obj, f.name), f'{cls.__name__}.{f.name}')}"
                for f in dataclasses.fields(obj)
                if not _is_default(f, getattr(obj, f.name))
            )
            # a user's own layer class: its methods (the kernel rule) count too
            code = "" if _is_library(cls.__module__) else self(cls, f"class {cls.__name__}")
            return f"{cls.__qualname__}{code}({inner})"
        if isinstance(obj, tuple | list):
            inner = ", ".join(self(v, f"[{i}]") for i, v in enumerate(obj))
            return f"({inner})" if isinstance(obj, tuple) else f"[{inner}]"
        if isinstance(obj, dict):
            items = sorted(f"{self(k, 'key')}: {self(v, f'[{k!r}]')}" for k, v in obj.items())
            return "{" + ", ".join(items) + "}"
        if isinstance(obj, set | frozenset):
            return "{" + ", ".join(sorted(self(v, "item") for v in obj)) + "}"
        if isinstance(obj, types.ModuleType):
            return f"<module {obj.__name__}>"
        if isinstance(obj, types.FunctionType):
            return self._function(obj)
        if isinstance(obj, types.MethodType):
            return f"<method {self(obj.__func__, 'method')} of {self(obj.__self__, 'self')}>"
        if isinstance(obj, functools.partial):
            return (
                f"<partial {self(obj.func, 'partial.func')} args={self(obj.args, 'args')} "
                f"kwargs={self(obj.keywords, 'keywords')}>"
            )
        if isinstance(obj, types.CodeType):
            return self._code(obj)
        if isinstance(obj, _BUILTIN_TYPES):
            module = getattr(obj, "__module__", None)
            owner = getattr(obj, "__self__", None)
            if module is None and isinstance(owner, types.ModuleType):
                module = owner.__name__
            if not _is_library(module):
                raise self.refuse(obj, f"the built-in (C) function {self._name(obj)}")
            return f"<builtin {module}.{getattr(obj, '__qualname__', obj.__name__)}>"
        if isinstance(obj, types.MethodDescriptorType | types.WrapperDescriptorType):
            owner = obj.__objclass__
            if not _is_library(owner.__module__):
                raise self.refuse(obj, f"the built-in (C) method {obj.__qualname__}")
            return f"<builtin {owner.__module__}.{obj.__qualname__}>"
        if isinstance(obj, type):
            return self._class(obj)
        if isinstance(obj, torch.nn.Module):
            state = {k: v for k, v in obj.state_dict().items()}
            plain = {
                k: v
                for k, v in vars(obj).items()
                if not k.startswith("_") and isinstance(v, bool | int | float | str | tuple)
            }
            return (
                f"<nn.Module {self(type(obj), 'type')} state={self(state, 'state_dict')} "
                f"attrs={self(plain, 'attributes')}>"
            )
        raise self.refuse(obj, f"an object of type {type(obj).__module__}.{type(obj).__qualname__}")

    @staticmethod
    def _name(fn: Any) -> str:
        module = getattr(fn, "__module__", None) or "?"
        qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", type(fn).__qualname__))
        return f"{module}.{qualname}"

    def _function(self, fn: types.FunctionType) -> str:
        name = self._name(fn)
        parts = []
        if fn.__closure__:
            for var, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=True):
                try:
                    value = cell.cell_contents
                except ValueError:  # empty cell
                    parts.append(f"{var}=<empty>")
                    continue
                parts.append(f"{var}={self(value, f'{name} closure {var!r}')}")
        if fn.__defaults__:
            parts.append(f"defaults={self(fn.__defaults__, f'{name} defaults')}")
        if fn.__kwdefaults__:
            parts.append(f"kwdefaults={self(fn.__kwdefaults__, f'{name} kwdefaults')}")
        if not _is_library(fn.__module__):
            parts.append(f"code={self._code(fn.__code__)}")
            for g in sorted(_global_names(fn.__code__)):
                if g in fn.__globals__:
                    parts.append(f"global {g}={self(fn.__globals__[g], f'{name} global {g!r}')}")
                elif hasattr(builtins, g):
                    parts.append(f"global {g}=<builtins.{g}>")
        return f"<fn {name}#{_digest('; '.join(parts))}>"

    def _code(self, code: types.CodeType) -> str:
        consts = [
            self._code(c) if isinstance(c, types.CodeType) else self(c, "constant")
            for c in code.co_consts
        ]
        blob = "|".join(
            [
                code.co_code.hex(),
                repr(code.co_names),
                repr(code.co_varnames),
                repr(code.co_freevars),
                repr(code.co_cellvars),
                repr((code.co_argcount, code.co_kwonlyargcount, code.co_flags)),
                *consts,
            ]
        )
        return f"<code {code.co_name}#{_digest(blob)}>"

    def _class(self, cls: type) -> str:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if _is_library(cls.__module__):
            return f"<class {name}>"
        members = []
        # dataclass fields (their defaults sit in the class namespace) and the generated
        # __init__ are described by the instance's fields, not here: a field added later
        # with a default keeps old fingerprints (see _is_default)
        fields = getattr(cls, "__dataclass_fields__", {})
        own = ("__call__", "__post_init__") if fields else ("__call__", "__init__", "__post_init__")
        for k, v in sorted(vars(cls).items()):
            if isinstance(v, staticmethod | classmethod):
                v = v.__func__
            if isinstance(v, property):
                v = (v.fget, v.fset)
            if k in fields or (k.startswith("__") and k not in own):
                continue
            if isinstance(v, types.FunctionType | tuple | bool | int | float | str | type(None)):
                members.append(f"{k}={self(v, f'{name}.{k}')}")
        bases = ", ".join(self(b, "base") for b in cls.__bases__ if b is not object)
        return f"<class {name}({bases})#{_digest('; '.join(members))}>"


def _global_names(code: types.CodeType) -> set[str]:
    """Names the code (and its nested code objects) may read as globals.

    ``co_names`` also holds attribute names (``torch.tanh`` lists ``tanh``); a
    name that is not a global of the function is skipped by the caller, so the
    over-approximation only adds globals that happen to share an attribute's name.
    """
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def describe_spec(obj: Any) -> str:
    """Canonical text of a network spec's behaviour (see the module docstring).

    Raises :class:`FingerprintError` (a ``TypeError``) naming the part of the
    spec that cannot be fingerprinted and the remedy (:func:`versioned`).
    """
    return _Describer()(obj, type(obj).__name__)
