"""prefect.yaml declares deployments that point at real flows with valid parameters."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint

REPO = Path(__file__).resolve().parents[2]


def test_deployments_load_and_validate(monkeypatch):
    monkeypatch.chdir(REPO)
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {"nightly-local", "hourly-lake", "weekly-full-dask", "nightly-hub"} <= set(deployments)
    for name, d in deployments.items():
        flow = load_flow_from_entrypoint(d["entrypoint"])
        assert flow.name == ("index-hub" if name.endswith("-hub") else "index-local")
        flow.validate_parameters(d["parameters"])
        for s in d["schedules"]:
            CronSchedule(cron=s["cron"], timezone=s["timezone"])
    assert deployments["nightly-local"]["schedules"][0]["active"] is True
