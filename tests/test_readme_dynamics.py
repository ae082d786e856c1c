"""The README's code blocks for ``gradient_descent`` and ``from_module`` run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = (
    "## Training with any loss under the NTK",
    "## From an ordinary PyTorch model: `from_module`",
)


def _blocks(heading: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return re.findall(r"```python\n(.*?)```", text[start : None if end < 0 else end], re.S)


@pytest.mark.parametrize("heading", SECTIONS)
def test_readme_section_runs(heading, capsys):
    blocks = _blocks(heading)
    assert blocks, f"no python block under {heading!r}"
    for code in blocks:
        exec(compile(code, f"README.md: {heading}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out  # the examples print their results
