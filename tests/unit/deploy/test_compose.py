"""deploy/compose.yaml: valid against the compose-spec schema, every service with a health
check and a restart policy, given only variables it reads, stopped no faster than it drains."""

from __future__ import annotations

import copy
import json
from importlib import resources

import jsonschema
import pytest

from tests.unit.deploy.known_env import known_env, setting_default
from tests.unit.deploy.manifests import (
    STOP_TAIL_S,
    compose,
    compose_services,
    seconds,
    service_of,
)

# The compose-spec schema as vendored by check-jsonschema (from compose-spec/compose-spec,
# schema/compose-spec.json; the version is check-jsonschema's, pinned in requirements.lock).
_SCHEMA = json.loads(
    resources.files("check_jsonschema.builtin_schemas.vendor")
    .joinpath("compose-spec.json")
    .read_text()
)
SERVICES = sorted(compose_services())
# (compose service, python module) of the services that keep running.
SERVING = [
    (name, module)
    for name, s in sorted(compose_services().items())
    if (module := service_of(s.get("command", []))) not in (None, "migrate")
]


def _errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(_SCHEMA)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_the_compose_spec() -> None:
    assert _errors(compose()) == []


def test_a_misspelt_service_key_fails_validation() -> None:
    doc = copy.deepcopy(compose())
    doc["services"]["ingest"]["healthcheks"] = doc["services"]["ingest"].pop("healthcheck")
    assert _errors(doc)


def test_the_whole_suite_is_there() -> None:
    commands = {service_of(s.get("command", [])) for s in compose_services().values()}
    assert {"ingest", "projector", "campaign", "console", "migrate"} <= commands
    assert {"postgres", "nats-0", "nats-1", "nats-2"} <= set(compose_services())


def _one_shot(name: str) -> bool:
    """Services others wait for to finish (the migration)."""
    return any(
        dep.get("condition") == "service_completed_successfully"
        for other in compose_services().values()
        for dep_name, dep in (other.get("depends_on") or {}).items()
        if dep_name == name
    )


@pytest.mark.parametrize("name", SERVICES)
def test_service_has_a_health_check_and_a_restart_policy(name: str) -> None:
    service = compose_services()[name]
    if _one_shot(name):
        assert service["restart"] == "on-failure"
        assert service["healthcheck"] == {"disable": True}, "say so: it exits when done"
        return
    assert service["restart"] in ("always", "unless-stopped")
    check = service["healthcheck"]
    assert check["test"][0] == "CMD" and len(check["test"]) > 1
    assert seconds(check["interval"]) > 0 and seconds(check["timeout"]) > 0


@pytest.mark.parametrize("name", SERVICES)
def test_service_gets_only_variables_it_reads(name: str) -> None:
    service = compose_services()[name]
    module = service_of(service.get("command", []))
    if module is None:
        return  # postgres and nats: their images' own variables
    unknown = set(service.get("environment", {})) - known_env(module)
    assert not unknown, f"{name} sets variables services.{module} ignores"


@pytest.mark.parametrize(("name", "module"), SERVING)
def test_service_listens_where_it_is_checked_and_published(name: str, module: str) -> None:
    service = compose_services()[name]
    host, _, port = service["environment"][f"{module.upper()}_LISTEN"].rpartition(":")
    assert host == "0.0.0.0"
    assert any(
        arg.endswith(f"127.0.0.1:{port}") or arg.endswith(f"127.0.0.1:{port}/healthz")
        for arg in service["healthcheck"]["test"]
    )
    assert any(p.endswith(f":{port}") for p in service["ports"])


@pytest.mark.parametrize(("name", "module"), SERVING)
def test_stop_grace_covers_drain_grace_and_closing(name: str, module: str) -> None:
    service = compose_services()[name]
    env = service["environment"]
    drain = float(env.get("SHUTDOWN_DRAIN_S", setting_default("SHUTDOWN_DRAIN_S")))
    grace = float(env.get("SHUTDOWN_GRACE_S", setting_default("SHUTDOWN_GRACE_S")))
    assert seconds(service["stop_grace_period"]) >= drain + grace + STOP_TAIL_S[module]


def test_stream_replicas_follow_the_nats_cluster_size() -> None:
    servers = [n for n, s in compose_services().items() if s.get("image", "").startswith("nats:")]
    assert len(servers) == 3
    for name in ("projector", "campaign"):
        assert compose_services()[name]["environment"]["CHANGES_REPLICAS"] == str(len(servers))
    for server in servers:
        aliases = compose_services()[server]["networks"]["default"]["aliases"]
        assert f"{server}.nats" in aliases, "the route names of deploy/nats/nats-server.conf"


def test_projector_workers_share_the_partitions() -> None:
    """Two or more projector services alike but for their published ports, no more of
    them than the partitions (the default of COHORTFLOW_PARTITIONS) they share, which the
    migration records and ingest routes to."""
    workers = {
        n: s
        for n, s in compose_services().items()
        if service_of(s.get("command", [])) == "projector"
    }
    assert len(workers) >= 2
    environments = [s["environment"] for s in workers.values()]
    assert all(env == environments[0] for env in environments)
    partitions = environments[0]["COHORTFLOW_PARTITIONS"]
    assert partitions.startswith("${COHORTFLOW_PARTITIONS:-")
    assert len(workers) <= int(partitions.removeprefix("${COHORTFLOW_PARTITIONS:-").rstrip("}"))
    for name, service in compose_services().items():
        if service_of(service.get("command", [])) in ("ingest", "migrate"):
            env = service["environment"]
            assert env["COHORTFLOW_PARTITIONS"] == partitions, f"{name}: the workers' P"
            assert env["COHORTFLOW_PLACEMENT"] == environments[0]["COHORTFLOW_PLACEMENT"]
    published = [p.rsplit(":", 1)[0] for s in workers.values() for p in s["ports"]]
    assert len(published) == len(set(published)), "each worker on host ports of its own"
