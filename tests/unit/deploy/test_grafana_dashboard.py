"""deploy/grafana/cohortflow.json: a Grafana dashboard (schema, layout) whose every query
parses as PromQL over metrics the services export, covering what the alerts watch."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from tests.unit.deploy.manifests import DEPLOY
from tests.unit.deploy.registered_metrics import selectors, unknown_names
from tests.unit.deploy.rule_files import load

DASHBOARD = json.loads((DEPLOY / "grafana" / "cohortflow.json").read_text())
SCHEMA = json.loads((Path(__file__).parent / "grafana-dashboard.schema.json").read_text())
PANELS = DASHBOARD["panels"]
QUERIES = [(p["title"], t["expr"]) for p in PANELS for t in p.get("targets", [])]


def _errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def test_dashboard_matches_the_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert _errors(DASHBOARD) == []


def test_a_misspelt_panel_key_fails_validation() -> None:
    doc = copy.deepcopy(DASHBOARD)
    doc["panels"][1]["gridpos"] = doc["panels"][1].pop("gridPos")
    assert _errors(doc)


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    ids = [p["id"] for p in PANELS]
    assert len(set(ids)) == len(ids)
    taken: set[tuple[int, int]] = set()
    for panel in PANELS:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_queries_use_the_datasource_variable() -> None:
    names = {v["name"] for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource"}
    for panel in PANELS:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"].strip("${}") in names


@pytest.mark.parametrize(("title", "expr"), QUERIES, ids=[f"{t}:{e[:40]}" for t, e in QUERIES])
def test_query_selects_only_exported_metrics(title: str, expr: str) -> None:
    assert unknown_names(expr) == []


def _families(exprs: list[str]) -> set[str]:
    suffixes = ("_bucket", "_count", "_sum", "_total")
    out = set()
    for expr in exprs:
        for selector in selectors(expr):
            name = selector.metric
            for suffix in suffixes:
                name = name.removesuffix(suffix)
            out.add(name)
    return out


def test_every_metric_an_alert_watches_is_on_the_dashboard() -> None:
    alerts = [r.expr for g in load(DEPLOY / "prometheus" / "alerts.yaml").groups for r in g.rules]
    assert _families(alerts) - _families([e for _, e in QUERIES]) == set()
