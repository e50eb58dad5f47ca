"""``make demo``'s queries run as printed, and the README shows them word for word."""

from __future__ import annotations

from pathlib import Path

from heritage import demo

REPO = Path(__file__).resolve().parents[2]


def test_readme_shows_the_demo_queries_verbatim():
    readme = (REPO / "README.md").read_text()
    for title, sql in demo.QUERIES:
        assert f"{title}:\n\n```sql\n{sql}\n```" in readme


def test_demo_indexes_the_zoo_and_prints_query_results(small_zoo, tmp_path, capsys):
    assert demo.main([str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    db = (tmp_path / "demo/lineage.duckdb").resolve()
    assert f"The index is {db}" in out and "46 models:" in out
    chunks = out.split("\n-- ")[1:]
    assert len(chunks) == len(demo.QUERIES)
    for (title, sql), chunk in zip(demo.QUERIES, chunks, strict=True):
        assert chunk.startswith(f"{title}\n{sql}\n")
    assert "(0 rows)" not in chunks[0] and "(0 rows)" not in chunks[1]


def test_the_zoo_build_reports_progress_in_a_log(monkeypatch, capsys):
    """Not on a terminal, the demo prints a line every five models, with the time left."""
    import heritage.zoo.cache as cache

    def fake_zoo(size, seed, on_model=None, **kwargs):
        for done in range(1, 13):
            on_model(done, 12)
        return Path("zoo")

    monkeypatch.setattr(cache, "cached_zoo", fake_zoo)
    assert demo._zoo_with_progress() == Path("zoo")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0].strip() for line in lines] == [
        "trained 5/12 zoo models",
        "trained 10/12 zoo models",
        "trained 12/12 zoo models",
    ]
    assert all("s left" in line for line in lines)
