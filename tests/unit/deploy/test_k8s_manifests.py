"""deploy/k8s: valid against the Kubernetes schemas (offline, strict), and wired the way the
services read their settings, stop and report health."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from services.campaign import bootstrap as campaign
from services.ingest import bootstrap as ingest
from services.projector.bootstrap import (
    ANALYTICS_SERVICE,
    OPERATIONS_SERVICE,
    PROFILE_SERVICE,
    SEGMENT_SERVICE,
)
from tests.unit.deploy.known_env import known_env, setting_default
from tests.unit.deploy.manifests import (
    K8S,
    NATS_CONF,
    STOP_TAIL_S,
    Container,
    k8s_containers,
    k8s_documents,
    k8s_kind,
)

# The oldest Kubernetes the manifests must run on (native gRPC probes: 1.27; preStop sleep
# action: 1.30, on by default). kubernetes-validate ships this version's schemas.
KUBERNETES = "1.33.0"
SERVICES = {"ingest", "projector", "campaign", "console", "migrate"}
PROJECTOR_APIS = (PROFILE_SERVICE, SEGMENT_SERVICE, OPERATIONS_SERVICE, ANALYTICS_SERVICE)


def _validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_pinned_kubernetes_schemas_are_shipped() -> None:
    assert KUBERNETES in all_versions()


@pytest.mark.parametrize(
    "doc", [d for _, d in k8s_documents()], ids=[f"{f}:{d['kind']}" for f, d in k8s_documents()]
)
def test_manifest_is_valid_against_the_kubernetes_schema(doc: dict) -> None:
    _validate(doc)


def test_a_misspelt_field_fails_validation() -> None:
    doc = copy.deepcopy(next(d for d in k8s_kind("Deployment")))
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)


def test_every_service_and_nats_has_a_workload() -> None:
    services = {c.service for c in k8s_containers()} - {None}
    assert services == SERVICES
    assert [s["metadata"]["name"] for s in k8s_kind("StatefulSet")].count("nats") == 1


def test_kustomization_lists_every_manifest_but_the_migration() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "migrate.yaml"}
    assert sorted(listed) == sorted(files)


def _long_running() -> list[Container]:
    return [c for c in k8s_containers() if c.service and c.workload["kind"] != "Job"]


@pytest.mark.parametrize("container", k8s_containers(), ids=lambda c: c.name)
def test_container_gets_only_variables_it_reads(container: Container) -> None:
    if container.service is None:
        assert container.workload["metadata"]["name"] == "nats"
        return
    unknown = set(container.env()) - known_env(container.service)
    assert not unknown, f"{container.name} sets variables services.{container.service} ignores"


@pytest.mark.parametrize("container", k8s_containers(), ids=lambda c: c.name)
def test_secrets_are_references_never_values(container: Container) -> None:
    env = container.env()
    for name in ("DATABASE_URL", "COHORTFLOW_API_KEYS", "CAMPAIGN_SMTP_PASSWORD"):
        assert env.get(name) is None, f"{container.name}: {name} must come from a Secret"
    assert not k8s_kind("Secret"), "secrets are created by the operator, not shipped"


@pytest.mark.parametrize("container", _long_running(), ids=lambda c: c.name)
def test_service_listens_on_all_interfaces_at_its_probed_port(container: Container) -> None:
    env = container.env()
    listen = env[f"{container.service.upper()}_LISTEN"]
    host, _, port = (listen or "").rpartition(":")
    assert host == "0.0.0.0", f"{container.name} would listen on {host} only"
    ports = {p["name"]: p["containerPort"] for p in container.spec["ports"]}
    assert int(port) in ports.values()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container.spec[probe]
        target = spec["grpc"]["port"] if "grpc" in spec else ports[spec["httpGet"]["port"]]
        assert target == int(port), f"{container.name} {probe} probes another port"


@pytest.mark.parametrize("container", _long_running(), ids=lambda c: c.name)
def test_grpc_services_are_probed_on_grpc_health(container: Container) -> None:
    expected = "httpGet" if container.service == "console" else "grpc"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert expected in container.spec[probe], f"{container.name} {probe}"


# Health names a probe may ask for: ones the service sets, and none that follows NATS (a
# NATS outage must not take reads, the inbox or the campaign API out of their Services).
PROBED_NAMES = {
    "ingest": {"", ingest.SERVICE_NAME},
    "projector": {"", *PROJECTOR_APIS},
    "campaign": {campaign.CAMPAIGN_SERVICE, campaign.INBOX_SERVICE},
}


@pytest.mark.parametrize("container", _long_running(), ids=lambda c: c.name)
def test_probes_ask_for_health_that_does_not_follow_nats(container: Container) -> None:
    probes = {p: container.spec[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    if container.service == "console":
        # Readiness says whether pages can be served; startup and liveness only that the
        # process answers (a projector still loading must not get the console restarted).
        paths = {p: spec["httpGet"]["path"] for p, spec in probes.items()}
        assert paths == {
            "startupProbe": "/livez",
            "readinessProbe": "/healthz",
            "livenessProbe": "/livez",
        }
        return
    for name, spec in probes.items():
        asked = spec["grpc"].get("service", "")
        assert asked in PROBED_NAMES[container.service], f"{container.name} {name}: {asked!r}"


@pytest.mark.parametrize("container", _long_running(), ids=lambda c: c.name)
def test_metrics_are_exposed_where_prometheus_scrapes(container: Container) -> None:
    env = container.env()
    prefix = container.service.upper()
    if f"{prefix}_METRICS_PORT" not in known_env(container.service):
        return  # the console exports no Prometheus metrics
    annotations = container.workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert env[f"{prefix}_METRICS_HOST"] == "0.0.0.0"
    assert env[f"{prefix}_METRICS_PORT"] == annotations["prometheus.io/port"]


@pytest.mark.parametrize("container", _long_running(), ids=lambda c: c.name)
def test_termination_grace_covers_prestop_drain_grace_and_closing(container: Container) -> None:
    env = container.env()
    drain = float(env.get("SHUTDOWN_DRAIN_S") or setting_default("SHUTDOWN_DRAIN_S"))
    grace = float(env.get("SHUTDOWN_GRACE_S") or setting_default("SHUTDOWN_GRACE_S"))
    pre_stop = container.spec["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 3, "endpoints need a moment to drop the pod before SIGTERM"
    needed = pre_stop + drain + grace + STOP_TAIL_S[container.service]
    assert container.pod["terminationGracePeriodSeconds"] >= needed


@pytest.mark.parametrize("container", k8s_containers(), ids=lambda c: c.name)
def test_resources_are_requested(container: Container) -> None:
    requests = container.spec["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)


@pytest.mark.parametrize(
    "workload",
    [d for d in k8s_kind("Deployment") + k8s_kind("StatefulSet")],
    ids=lambda d: d["metadata"]["name"],
)
def test_workload_has_a_disruption_budget_and_a_service(workload: dict) -> None:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    selector = workload["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    budgets = [
        b
        for b in k8s_kind("PodDisruptionBudget")
        if b["spec"]["selector"]["matchLabels"] == selector
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"].get("maxUnavailable") == 1, "never block a node drain for good"
    services = [s for s in k8s_kind("Service") if s["spec"]["selector"].items() <= labels.items()]
    assert services


def test_nats_configmap_is_the_checked_config_file() -> None:
    (config,) = [m for m in k8s_kind("ConfigMap") if m["metadata"]["name"] == "nats-config"]
    assert config["data"]["nats-server.conf"] == NATS_CONF.read_text()


def test_stream_replicas_follow_the_nats_cluster_size() -> None:
    (nats,) = [s for s in k8s_kind("StatefulSet") if s["metadata"]["name"] == "nats"]
    size = nats["spec"]["replicas"]
    routes = [line for line in NATS_CONF.read_text().splitlines() if ":6222" in line]
    assert len(routes) == size
    for container in k8s_containers():
        if container.service in ("projector", "campaign"):
            assert container.env()["CHANGES_REPLICAS"] == str(size)


@pytest.mark.parametrize("service", k8s_kind("Service"), ids=lambda s: s["metadata"]["name"])
def test_service_routes_to_ports_its_pods_declare(service: dict) -> None:
    selector = service["spec"]["selector"].items()
    pods = [
        w
        for w in k8s_kind("Deployment") + k8s_kind("StatefulSet")
        if selector <= w["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert pods, f"{service['metadata']['name']} selects no pods"
    for workload in pods:
        declared = {
            p["name"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in declared, f"{port['targetPort']} not declared"


def test_projector_workers_share_the_partitions_of_the_deployment() -> None:
    """More than one projector replica, no more than the partitions they share; every
    container that opens the partitioned log is given the same P and the placement map."""
    (projector,) = [c for c in k8s_containers() if c.service == "projector"]
    replicas = projector.workload["spec"]["replicas"]
    partitions = int(projector.env()["COHORTFLOW_PARTITIONS"] or 0)
    assert 2 <= replicas <= partitions
    for container in k8s_containers():
        if container.service in ("ingest", "projector", "migrate"):
            assert container.env()["COHORTFLOW_PARTITIONS"] == str(partitions), container.name
            (placement,) = [e for e in container.spec["env"] if e["name"] == "COHORTFLOW_PLACEMENT"]
            ref = placement["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "cohortflow-db" and ref["optional"] is True
