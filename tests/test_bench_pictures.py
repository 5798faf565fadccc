"""bench/pictures.py --recorded draws the README's recorded tables: each
table it names is still there with figures in the columns it draws, and each
picture is shown in the README (a renamed header or a moved column would
otherwise leave a stale picture or none)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import pictures  # noqa: E402


@pytest.mark.parametrize("spec", pictures.RECORDED, ids=lambda s: s.name)
def test_each_recorded_table_has_the_figures_drawn(spec):
    rows = [r for r in pictures.table(spec.source, spec.header) if spec.rows is None or re.search(spec.rows, r[0])]
    assert rows
    for name, col, pick, _kind in spec.series:
        assert any(pictures._pick(r[col], pick) is not None for r in rows if col < len(r)), name
    assert f"(docs/bench/{spec.name}.png)" in (ROOT / "README.md").read_text()
    assert (ROOT / "docs" / "bench" / f"{spec.name}.png").exists()


def test_cells_read_as_the_tables_write_them():
    assert pictures.numbers("1.03 M") == [1.03e6]
    assert pictures.numbers("864 k (86)") == [864e3, 86]
    assert pictures.numbers("**0.82x** (goal >= 0.8x)") == [0.82, 0.8]
    assert pictures.numbers("508 / 504") == [508, 504]
    assert pictures.numbers("1,000,000") == [1e6]
