"""docs/schema.md is generated from the index's column comments and must match them."""

from __future__ import annotations

from pathlib import Path

from heritage.index import schema_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def test_schema_doc_matches_the_comments() -> None:
    assert DOC.read_text() == schema_doc.schema_markdown(), (
        "docs/schema.md differs from the comments in heritage/index/schema.sql: run `make docs`"
    )


def test_every_column_is_documented() -> None:
    text = schema_doc.schema_markdown()
    for table in ("models", "tensors", "fingerprints", "families", "edges", "runs", "meta"):
        assert f"### `{table}`" in text
    assert "| `verified` | `BOOLEAN` |" in text
    assert "| `ancestors(model)` |" in text
    # a column without a comment would leave an empty meaning cell
    assert "|  |" not in text and not any(line.endswith("| |") for line in text.splitlines())


def test_write_option(tmp_path: Path) -> None:
    out = tmp_path / "schema.md"
    assert schema_doc.main(["--write", str(out)]) == 0
    assert out.read_text() == DOC.read_text()
