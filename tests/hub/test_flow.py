from __future__ import annotations

from pathlib import Path

from heritage.index import read_index
from tests.hub.emulator import HubEmulator


def test_index_hub_flow(hub: HubEmulator, tmp_path: Path, prefect_harness) -> None:
    from flows.index_hub import index_hub

    db = tmp_path / "f.duckdb"
    result = index_hub(db=str(db), endpoint=hub.url, author="lumenlabs")
    # lumenlabs/mlp-b holds only a torch pickle: read too, by range
    assert set(result["read"]) == {
        "lumenlabs/tinyllama-b",
        "lumenlabs/vit-tiny-b",
        "lumenlabs/mlp-b",
    }
    assert not result["failed"]
    assert read_index(db).runs["flow"].to_list() == ["index-hub"]
    index_hub.validate_parameters({"db": "x.duckdb", "search": "llama", "limit": 5})
