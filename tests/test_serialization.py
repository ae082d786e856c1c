"""JSON conversion lives in the library; only the CLI imports the CLI."""

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import widelimit
from widelimit.serialization import jsonable, print_json


@dataclass
class _Result:
    values: torch.Tensor
    table: np.ndarray
    best: np.float64
    where: Path
    extra: dict


def test_jsonable_converts_nested_results(capsys):
    res = _Result(
        values=torch.tensor([1.0, float("nan")]),
        table=np.arange(4).reshape(2, 2),
        best=np.float64(0.25),
        where=Path("out") / "a.json",
        extra={1: (float("inf"), torch.float64)},
    )
    expected = {
        "values": [1.0, None],
        "table": [[0, 1], [2, 3]],
        "best": 0.25,
        "where": str(Path("out") / "a.json"),
        "extra": {"1": [None, "torch.float64"]},
    }
    assert jsonable(res) == expected
    print_json(res)
    assert json.loads(capsys.readouterr().out) == expected
    assert jsonable(math.pi) == math.pi and jsonable("x") == "x"


def test_only_the_cli_imports_the_cli():
    root = Path(widelimit.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "_cli" or rel.name in ("cli.py", "__main__.py"):  # the entry points
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.startswith("widelimit._cli") or n == "widelimit.cli" for n in names):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
