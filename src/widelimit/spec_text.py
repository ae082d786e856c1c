"""Parse a network description from text (CLI and config files).

Syntax: layers separated by ``->`` (or newlines), each a call with literal
arguments or a bare name, e.g.::

    Dense(512, w_std=1.5, b_std=0.05) -> ReLU -> Dense(512) -> Erf -> Dense(1)
    Dense(64) -> serial(FanOut(2), parallel(Identity(), serial(ReLU(), Dense(64))), FanInSum())

Layer names are the classes exported by :mod:`widelimit.layers` (and
``serial``/``parallel``); activations may also be given by their lowercase
registry name (``relu``, ``tanh``, ``gelu``...).  Names are matched exactly first, then
case-insensitively ignoring ``_`` and ``-`` when that names one layer, so Neural Tangents'
spellings ``Relu``, ``Erf``, ``Gelu``, ``LeakyRelu``, ``ABRelu`` work, and keyword arguments
likewise (``W_std`` is ``w_std``); an unknown name is answered with the closest known one.
Only literals are accepted as
arguments (numbers, strings, tuples): nothing is executed.  A TOML file with a
top-level ``net = "..."`` string holds the same description.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the layers (and torch) load when a net is parsed, not on import
    from widelimit.layers.base import Layer


def default_net(readout: int = 1) -> str:
    """The default network of the CLI, the estimators and the demo, as text.

    Two hidden ReLU layers of width 512 with ``w_std=1.4, b_std=0.1`` and a dense
    readout of ``readout`` outputs.
    """
    layer = "w_std=1.4, b_std=0.1"
    return (
        f"Dense(512, {layer}) -> ReLU -> Dense(512, {layer}) -> ReLU -> Dense({readout}, {layer})"
    )


DEFAULT_NET = default_net(1)
"""Default network description (one output); see :func:`default_net`."""

_NOT_BUILDABLE = {
    "Layer",
    "Elementwise",
    "NumericalActivation",
    "Activation",
    "WidthLayer",
    "Serial",  # written serial(...) or with "->"
    "Parallel",  # written parallel(...)
}
_FUNCTIONS = ("serial", "parallel", "repeat")  # layer-building functions, not classes
_MAX_REPEAT = 1000  # a net description is text from anywhere: no billion-layer nets
_DEPRECATED = {"Scale"}  # still accepted (warns on construction), not listed by known_layers


def _registry() -> dict[str, object]:
    import widelimit.layers as layers_mod
    from widelimit.layers.base import Layer

    reg: dict[str, object] = {}
    for name in getattr(layers_mod, "__all__", []):
        obj = getattr(layers_mod, name)
        if name in _NOT_BUILDABLE:
            continue
        if (isinstance(obj, type) and issubclass(obj, Layer)) or name in _FUNCTIONS:
            reg[name] = obj
    try:
        from widelimit.layers.activations import ACTIVATIONS  # name -> constructor
    except ImportError:  # pragma: no cover - registry not available
        ACTIVATIONS = {}
    for name, ctor in ACTIVATIONS.items():
        reg.setdefault(name, ctor)
    return reg


def known_layers() -> list[str]:
    """Names accepted by :func:`parse_net` (deprecated spellings such as ``Scale`` are
    accepted too but not listed)."""
    return sorted(set(_registry()) - _DEPRECATED)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (case-insensitive edit similarity), or ``None``.

    Used for "did you mean" hints in errors (layers, arguments, activations, CLI choices).
    """
    by_key: dict[str, str] = {}
    for k in known:
        by_key.setdefault(_key(k), k)
    if _key(name) in by_key:
        return by_key[_key(name)]
    hits = difflib.get_close_matches(_key(name), list(by_key), n=1, cutoff=0.6)
    return by_key[hits[0]] if hits else None


# Neural Tangents (stax) names without a case-insensitive twin here: suggested, never guessed.
_NT_NAMES = {
    "conv": "Conv2d",
    "convtranspose": "ConvTranspose2d",
    "convlocal": "ConvLocal2d",
    "avgpool": "AvgPool2d",
    "sumpool": "SumPool2d",
    "selu": "ELU",
    "sigmoidlike": "Sigmoid",
}


def _lookup(name: str, reg: dict[str, object]) -> object:
    """The constructor for ``name``: exact, else the unique case-insensitive match."""
    if name in reg:
        return reg[name]
    matches = {id(v): v for k, v in reg.items() if _key(k) == _key(name)}
    if len(matches) == 1:
        return next(iter(matches.values()))
    listed = sorted(set(reg) - _DEPRECATED)
    if len(matches) > 1:
        same = sorted(k for k in reg if _key(k) == _key(name))
        raise ValueError(f"layer name {name!r} is ambiguous: write one of {', '.join(same)}")
    hint = _NT_NAMES.get(_key(name)) or closest(name, listed)
    tip = f"did you mean {hint!r}? " if hint else ""
    raise ValueError(f"unknown layer {name!r}; {tip}known layers: {', '.join(listed)}")


def _match_kwargs(name: str, ctor: object, kwargs: dict[str, object]) -> dict[str, object]:
    """Keyword names matched case-insensitively to the constructor's (``W_std`` -> ``w_std``);
    an unknown one is an error naming the closest accepted keyword."""
    try:
        params = inspect.signature(ctor).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    names = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out: dict[str, object] = {}
    for k, v in kwargs.items():
        if k not in names:
            same = [n for n in names if _key(n) == _key(k)]
            if len(same) != 1:
                best = closest(k, names)
                tip = f"did you mean {best!r}? " if best else ""
                raise ValueError(
                    f"bad arguments for {name}: no keyword {k!r}; {tip}"
                    f"{name} takes {', '.join(names) or 'no keywords'}"
                )
            k = same[0]
        if k in out:
            raise ValueError(f"bad arguments for {name}: {k!r} given twice")
        out[k] = v
    return out


def _literal(node: ast.AST, text: str) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError as err:
        raise ValueError(
            f"only literal arguments are allowed in a net description; got "
            f"{ast.get_source_segment(text, node)!r}"
        ) from err


def _build(node: ast.AST, text: str, reg: dict[str, object]) -> Layer:
    from widelimit.layers.base import Layer

    if isinstance(node, ast.Name):
        name, args, kwargs = node.id, [], {}
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name in ("serial", "parallel"):
            args = [_build(a, text, reg) for a in node.args]
        elif name == "repeat":  # repeat(layer, n)
            if len(node.args) != 2 or node.keywords:
                raise ValueError("repeat takes a layer and a count, e.g. repeat(Dense(64), 3)")
            count = _literal(node.args[1], text)
            if isinstance(count, int) and not isinstance(count, bool) and count > _MAX_REPEAT:
                raise ValueError(f"repeat count {count} is above the limit {_MAX_REPEAT}")
            args = [_build(node.args[0], text, reg), count]
        else:
            args = [_literal(a, text) for a in node.args]
        kwargs = {kw.arg: _literal(kw.value, text) for kw in node.keywords if kw.arg}
    else:
        raise ValueError(
            f"cannot parse {ast.get_source_segment(text, node)!r}: expected a layer such as "
            "Dense(512) or ReLU"
        )
    ctor = _lookup(name, reg)
    kwargs = _match_kwargs(name, ctor, kwargs)
    try:
        layer = ctor(*args, **kwargs)  # type: ignore[operator]
    except TypeError as err:
        raise ValueError(f"bad arguments for {name}: {err}") from err
    if not isinstance(layer, Layer):  # pragma: no cover - registry holds layers only
        raise ValueError(f"{name} did not build a layer")
    return layer


def _where(text: str, offset: int) -> str:
    """``line L, column C`` of a character offset (1-based), for error messages."""
    line = text.count("\n", 0, offset) + 1
    return f"line {line}, column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def _layer_texts(text: str) -> list[tuple[str, int]]:
    """Split a description into layer texts and their offsets; refuse dangling arrows.

    Layers are separated by ``->`` or by a line break; an arrow at the end of a line
    continues on the next line.  Blank lines and lines starting with ``#`` are skipped.
    An arrow with no layer before it, after it, or between it and another arrow
    (``"Dense(3) ->"``, ``"A -> -> B"``) is a ``ValueError`` naming its position.
    """
    parts: list[tuple[str, int]] = []
    pending: int | None = None  # offset of an arrow still waiting for its layer
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if body.strip() and not body.strip().startswith("#"):
            pos = offset
            for k, piece in enumerate(body.split("->")):
                if k:  # the arrow before this piece
                    arrow = pos - 2
                    if not parts:
                        raise ValueError(
                            f"'->' at {_where(text, arrow)} has no layer before it; e.g. "
                            "'Dense(512) -> ReLU -> Dense(1)'"
                        )
                    if pending is not None:
                        raise ValueError(
                            f"two '->' with no layer between them at {_where(text, pending)} "
                            f"and {_where(text, arrow)}; remove one or put a layer between"
                        )
                    pending = arrow
                stripped = piece.strip()
                if stripped.startswith("#"):
                    break  # a comment runs to the end of the line
                if stripped:
                    parts.append((stripped, pos + len(piece) - len(piece.lstrip())))
                    pending = None
                pos += len(piece) + 2
        offset += len(line)
    if pending is not None:
        raise ValueError(
            f"'->' at {_where(text, pending)} has no layer after it; remove it or add the "
            "next layer"
        )
    return parts


def parse_net(text: str) -> Layer:
    """Parse ``text`` (see module docstring) into a network spec (a ``serial`` of layers)."""
    from widelimit.layers.combinators import serial

    if not isinstance(text, str) or not text.strip():
        raise ValueError("the net description is empty; e.g. 'Dense(512) -> ReLU -> Dense(1)'")
    parts = _layer_texts(text)
    if not parts:
        raise ValueError("the net description has no layers; e.g. 'Dense(512) -> ReLU -> Dense(1)'")
    reg = _registry()
    layers = []
    for p, start in parts:
        try:
            tree = ast.parse(p, mode="eval")
        except SyntaxError as err:
            raise ValueError(
                f"cannot parse layer {p!r} at {_where(text, start)}: {err.msg}"
            ) from err
        layers.append(_build(tree.body, p, reg))
    return layers[0] if len(layers) == 1 else serial(*layers)


def load_net(path_or_text: str) -> Layer:
    """Parse a description given inline, in a text file, or in a TOML file (key ``net``)."""
    p = Path(path_or_text)
    if len(path_or_text) < 512 and p.suffix in (".toml", ".txt", ".net"):
        if not p.is_file():
            what = "is a directory" if p.is_dir() else "does not exist"
            raise ValueError(
                f"net file {str(p)!r} {what}; give an existing .txt/.toml/.net file or the "
                "description itself, e.g. 'Dense(512) -> ReLU -> Dense(1)'"
            )
        try:
            raw = p.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"net file {str(p)!r} cannot be read: {err}") from err
        if p.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError as err:  # Python 3.10
                raise ValueError("TOML net files need Python >= 3.11; pass the text") from err
            data = tomllib.loads(raw)
            if not isinstance(data.get("net"), str):
                raise ValueError(f'{p}: expected a top-level key `net = "Dense(...) -> ..."`')
            raw = data["net"]
        return parse_net(raw)
    return parse_net(path_or_text)


__all__ = ["DEFAULT_NET", "closest", "default_net", "known_layers", "load_net", "parse_net"]
