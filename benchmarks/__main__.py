"""Run every benchmark script and write one Markdown report + one JSON file.

    python -m benchmarks [--quick] [--only NAME ...] [--out DIR] [--timeout SECONDS]

Scripts are discovered dynamically: every ``benchmarks/<name>.py`` not starting
with ``_`` that defines ``run(quick) -> list[dict]``.  Each runs in its own
Python process (clean memory and thread settings; a crash or a timeout is
recorded as that script's error and the others still run).  Output:
``DIR/benchmarks.md`` (a summary table, then one table per script) and
``DIR/benchmarks.json`` (``{script: {status, seconds, rows | error}}``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_MARK = "@@widelimit-benchmark-rows@@"
_RUNNER = (
    "import importlib, json, sys\n"
    "m = importlib.import_module('benchmarks.' + sys.argv[1])\n"
    "rows = m.run(quick=sys.argv[2] == '1')\n"
    f"print({_MARK!r})\n"
    "print(json.dumps(rows, default=str))\n"
)


def discover() -> list[str]:
    """Names of the benchmark scripts (``benchmarks/*.py`` defining ``run``)."""
    names = []
    for p in sorted(_HERE.glob("*.py")):
        if p.name.startswith("_"):
            continue
        if "def run(" in p.read_text(errors="replace"):
            names.append(p.stem)
    return names


def run_script(name: str, quick: bool, timeout: float | None) -> dict[str, Any]:
    """Run one script's ``run(quick)`` in a subprocess; never raises."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, name, "1" if quick else "0"],
            cwd=_HERE.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - t0
        return {"status": "timeout", "seconds": seconds, "error": f"no result in {timeout} s"}
    seconds = time.perf_counter() - t0
    out = proc.stdout
    if proc.returncode != 0 or _MARK not in out:
        tail = (proc.stderr or out).strip().splitlines()[-8:]
        error = f"exit code {proc.returncode}: " + " | ".join(tail)
        return {"status": "error", "seconds": seconds, "error": error}
    try:
        rows = json.loads(out.split(_MARK, 1)[1].strip())
    except json.JSONDecodeError as err:
        return {"status": "error", "seconds": seconds, "error": f"unreadable rows: {err}"}
    return {"status": "ok", "seconds": seconds, "rows": rows}


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown(results: dict[str, dict[str, Any]], quick: bool) -> str:
    """Summary table (one row per script) followed by each script's own table."""
    lines = [f"# widelimit benchmarks{' (quick)' if quick else ''}", ""]
    lines += ["| script | status | seconds | rows | error |", "|---|---|---|---|---|"]
    for name, r in results.items():
        err = _cell(r.get("error", ""))[:300]
        nrows = len(r.get("rows", []))
        lines.append(f"| {name} | {r['status']} | {r['seconds']:.1f} | {nrows} | {err} |")
    for name, r in results.items():
        rows = r.get("rows") or []
        if not rows:
            continue
        cols: list[str] = []
        for row in rows:
            cols += [c for c in row if c not in cols]
        lines += ["", f"## {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run all widelimit benchmark scripts.")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--only", action="append", default=None, help="run only this script")
    p.add_argument("--out", type=Path, default=Path("benchmark-results"), help="output dir")
    p.add_argument("--timeout", type=float, default=None, help="seconds per script")
    args = p.parse_args(argv)
    names = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            p.error(f"unknown benchmark(s) {unknown}; available: {names}")
        names = [n for n in names if n in args.only]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        results[name] = r = run_script(name, args.quick, args.timeout)
        print(f"[benchmarks] {name}: {r['status']} ({r['seconds']:.1f} s)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(results, args.quick)
    (args.out / "benchmarks.md").write_text(md)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2, default=str))
    print(md)
    print(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
