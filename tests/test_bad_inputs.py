"""坏输入目录：每章的 tests/test_<章>.py 都有一张 BadInput 表（各行在各自的文件里执行并检查）。"""

from __future__ import annotations

import pytest

from mlbook.testing import BadInput, bad_input_catalogue

CATALOGUE = bad_input_catalogue()
MIN_ROWS = 5


@pytest.mark.parametrize("stem", sorted(CATALOGUE))
def test_every_chapter_has_a_bad_input_table(stem):
    rows = CATALOGUE[stem]
    assert len(rows) >= MIN_ROWS, (
        f"tests/test_{stem}.py 应有一张至少 {MIN_ROWS} 行的 BadInput 表（mlbook.testing.BadInput），"
        f"现在有 {len(rows)} 行"
    )
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids)), f"{stem} 的坏输入表有重复的 id"


def test_catalogue_rows_are_real_bad_inputs():
    assert all(isinstance(r, BadInput) for rows in CATALOGUE.values() for r in rows)
    assert sum(len(rows) for rows in CATALOGUE.values()) >= MIN_ROWS * len(CATALOGUE)
