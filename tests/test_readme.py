"""The README and the docs pages moved out of it cannot drift: their Python blocks run and
print what they say, their commands exist.

The pages checked are ``README.md`` and :data:`DOC_PAGES` (the getting-started and how-to
pages that hold the README's former reference sections, and docs/cli.md).

* Every ```` ```python ```` block runs on its own (fresh namespace, its own empty working
  directory), so a block that uses a name it does not define fails; ```` ```py ```` marks a
  template that is shown, not run. All blocks run in one
  subprocess to pay the ``import torch`` once.
* A ``print`` whose trailing comment starts with quoted numbers is checked against them:
  ``# ~X`` (a Monte Carlo quantity) must print a number within a factor 1.5 of ``X``;
  ``# ≈ X`` (a deterministic quantity, given the seeds) a number within one unit of the last
  digit of ``X``; ``k`` leading claims (``# ~2 ~2: ...``) match the last ``k`` printed numbers
  in order (labels come first in an f-string).  A comment that looks like a Python repr
  (``# torch.Size([8, 1])``, ``# (2, 300, 10)``, ``# 0 10: ...``; up to the first ``:``) must
  be the literal output; other comments are prose and are not checked.
* Every ``widelimit ...`` command in a ```` ```bash ```` block or an inline code span names an
  existing subcommand and only options it has (read from the click command that
  ``widelimit SUB --help`` prints), without running the long ones.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOC_PAGES = ("getting-started", "layers-howto", "analyses-howto", "errors", "cli")
"""docs/<page>.md whose blocks run like the README's (ids start with ``<page>:``)."""
PAGES = {"README": README} | {
    name: (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8") for name in DOC_PAGES
}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def _blocks(lang: str) -> list[tuple[str, str]]:
    """``(id, code)`` of every fenced block of ``lang`` in the README and :data:`DOC_PAGES`;
    ids name the section (README) or the page and the section (``page:section-k``)."""
    out, counts = [], {}
    for page, text in PAGES.items():
        for m in _FENCE.finditer(text):
            if m.group(1) != lang:
                continue
            heads = re.findall(r"^## (.+)$", text[: m.start()], re.M)
            slug = re.sub(r"[^a-z0-9]+", "-", (heads[-1] if heads else "top").lower()).strip("-")
            slug = slug if page == "README" else f"{page}:{slug}"
            counts[slug] = counts.get(slug, 0) + 1
            out.append((f"{slug}-{counts[slug]}", m.group(2)))
    return out


PYTHON_BLOCKS = _blocks("python")
# Blocks slower than ~20 s (run with -m slow); none at present: the slowest, the Quickstart,
# takes ~10 s of CPU including the imports.
SLOW_BLOCKS: set[str] = set()

_RUNNER = textwrap.dedent(
    """
    import builtins, io, json, os, sys, time, traceback
    blocks, out_path = json.load(open(sys.argv[1])), sys.argv[2]
    results = {}
    for bid, code in blocks:
        work = os.path.join(os.path.dirname(out_path), bid)
        os.makedirs(work)
        os.chdir(work)
        prints = []
        def rec(*args, _prints=prints, **kw):
            if "file" not in kw and sys._getframe(1).f_code.co_filename == "README":
                buf = io.StringIO()
                builtins.print(*args, **kw, file=buf)
                _prints.append([sys._getframe(1).f_lineno, buf.getvalue().strip()])
            builtins.print(*args, **kw)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            exec(compile(code, "README", "exec"), {"__name__": "__main__", "print": rec})
            error = None
        except BaseException:
            error = traceback.format_exc()
        results[bid] = {"prints": prints, "error": error,
                        "seconds": time.perf_counter() - t0,
                        "cpu_seconds": time.process_time() - c0}
    json.dump(results, open(out_path, "w"))
    """
)


_RESULTS: dict[bool, dict] = {}


def _run_blocks(slow: bool, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the fast (or the slow) blocks once, in one subprocess; cache the results."""
    if slow in _RESULTS:
        return _RESULTS[slow]
    blocks = [(b, c) for b, c in PYTHON_BLOCKS if (b in SLOW_BLOCKS) == slow]
    tmp = tmp_path_factory.mktemp("readme-slow" if slow else "readme")
    (tmp / "blocks.json").write_text(json.dumps(blocks))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else src
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(tmp / "blocks.json"), str(tmp / "results.json")],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"README runner crashed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    _RESULTS[slow] = json.loads((tmp / "results.json").read_text())
    return _RESULTS[slow]


_REPR = re.compile(r"^(torch\.|tensor\(|\(|\[|-?\d|True\b|False\b|None\b|'|\")")


def _claims(comment: str) -> tuple[list[tuple[str, str]], str | None]:
    """``([(kind, number), ...], literal or None)`` from a print's trailing comment."""
    lead = re.match(rf"(?:[~≈]\s*{_NUMBER}\s*)+", comment)
    if lead:
        return re.findall(rf"([~≈])\s*({_NUMBER})", lead.group(0)), None
    literal = comment.split(":")[0].strip()
    return [], literal if _REPR.match(literal) else None


def _agrees(kind: str, quoted: str, value: float) -> bool:
    x = float(quoted)
    if kind == "~":  # Monte Carlo quantity: the same within a factor 1.5
        return x != 0 and value / x > 0 and abs(math.log(value / x)) <= math.log(1.5)
    mantissa = quoted.lower().split("e")[0]  # ≈: one unit of the last quoted digit
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(quoted.lower().split("e")[1]) if "e" in quoted.lower() else 0
    return abs(value - x) <= 10.0 ** (exponent - decimals) * (1 + 1e-9)


def test_readme_has_python_blocks() -> None:
    assert len(PYTHON_BLOCKS) >= 5, [b for b, _ in PYTHON_BLOCKS]


@pytest.mark.parametrize(
    "bid,code",
    [
        pytest.param(b, c, id=b, marks=[pytest.mark.slow] if b in SLOW_BLOCKS else [])
        for b, c in PYTHON_BLOCKS
    ],
)
def test_readme_python_block(bid: str, code: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    res = _run_blocks(bid in SLOW_BLOCKS, tmp_path_factory)[bid]
    assert res["error"] is None, f"README block {bid} failed:\n{res['error']}"
    printed = dict((line, text) for line, text in res["prints"])
    lines = code.splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.startswith("print(") or "#" not in line:
            continue
        comment = line.split("#", 1)[1].strip()
        assert lineno in printed, f"{bid}: line {lineno} did not print: {line}"
        out = printed[lineno]
        claims, literal = _claims(comment)
        if literal is not None:
            assert out == literal, f"{bid}: {line!r} printed {out!r}, the README says {literal!r}"
            continue
        if not claims:
            continue  # a prose comment
        numbers = [float(v) for v in re.findall(_NUMBER, out)]
        assert len(numbers) >= len(claims), f"{bid}: {line!r} printed {out!r}"
        for (kind, quoted), value in zip(claims, numbers[-len(claims) :], strict=True):
            assert _agrees(kind, quoted, value), (
                f"{bid}: {line!r} printed {value:g}, the README quotes {kind}{quoted}; "
                "update the README with the number this block prints"
            )


# ----------------------------------------------------------------------------- commands
def _commands() -> list[list[str]]:
    """Every ``widelimit ...`` command line of the README, tokenised."""
    texts = []
    for _, code in _blocks("bash"):
        texts += code.replace("\\\n", " ").splitlines()
    for text in PAGES.values():
        texts += re.findall(r"(?<!`)`(widelimit [^`]+)`", text)
    out = []
    for text in texts:
        tokens = shlex.split(text, comments=True)
        cmd: list[str] = []
        for tok in [*tokens, "&&"]:
            if tok in ("&&", "||", "|", ";"):
                if cmd and cmd[0] == "widelimit":
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(tok)
    return out


COMMANDS = _commands()


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 8, COMMANDS


@pytest.mark.parametrize(
    "tokens", COMMANDS, ids=[f"{i}-{'-'.join(c[:2])}" for i, c in enumerate(COMMANDS)]
)
def test_readme_command_exists(tokens: list[str]) -> None:
    import typer.main
    from typer.testing import CliRunner

    from widelimit.cli import app

    group = typer.main.get_command(app)
    sub = next((t for t in tokens[1:] if not t.startswith("-")), None)
    if sub is None:  # `widelimit --help`, `widelimit --version`
        command, args = group, []
    else:
        assert sub in group.commands, f"`{' '.join(tokens)}`: no subcommand {sub!r}"
        command, args = group.commands[sub], [sub]
        help_run = CliRunner().invoke(app, [*args, "--help"])
        assert help_run.exit_code == 0, help_run.output
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    flags = [t.split("=")[0] for t in tokens if t.startswith("--")]
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"`{' '.join(tokens)}`: unknown option(s) {unknown}; has {sorted(known)}"
