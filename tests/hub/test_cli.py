from __future__ import annotations

import json
from pathlib import Path

from heritage.cli import main
from heritage.index import read_index
from tests.hub.emulator import HubEmulator


def test_hub_command(hub: HubEmulator, tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.duckdb"
    argv = ["hub", "--endpoint", hub.url, "--author", "bytebard", "--db", str(db), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    bytebard = {r for r in hub.repos if r.startswith("bytebard/")}
    seen = set(report["read"]) | set(report["not_fingerprinted"])
    assert seen == bytebard
    assert set(read_index(db).models["location"]) == bytebard
    assert main(["hub", "--endpoint", hub.url, "--repo", "nobody/none", "--db", str(db)]) == 1
    assert "nobody/none" in capsys.readouterr().err


def test_listing_paginates_and_searches(hub: HubEmulator) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=False)
    hub.page_size = 4
    everything = [m.id for m in api.list_models(expand=["sha"])]
    assert everything == list(hub.repos)
    assert sum(1 for _, p, _ in hub.counters.log if p == "/api/models") > 2
    found = [m.id for m in api.list_models(search="lora", expand=["sha", "cardData"])]
    assert found and all("lora" in r for r in found)
