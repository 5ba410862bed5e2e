"""Validation of the deployment material: deploy/, the Dockerfile and .dockerignore.

Offline and without services or a Docker engine. Needs ``promtool`` on PATH (Debian package
``prometheus``; the tests fail, not skip, without it), and the ``jsonschema`` and
``kubernetes-validate`` packages (the latter ships the Kubernetes JSON schemas).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from trackflow.cli import main as trackflow_cli
from trackflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
K8S = DEPLOY / "k8s"
GRAFANA = DEPLOY / "grafana"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_SCHEMA = DEPLOY / "schemas" / "compose-spec.json"

# ---------------------------------------------------------------------------------------------
# The metrics contract: every metric the code exports, its type and its labels. Alerts and the
# dashboard may use these names only (a histogram also as _bucket, _sum and _count).
# ---------------------------------------------------------------------------------------------
COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    # gateway (Prometheus job trackflow-gateway)
    "trackflow_gateway_requests_total": (COUNTER, frozenset({"endpoint", "status"})),
    "trackflow_gateway_events_accepted_total": (COUNTER, frozenset({"source"})),
    "trackflow_gateway_events_rejected_total": (COUNTER, frozenset({"source", "reason"})),
    "trackflow_gateway_request_duration_seconds": (HISTOGRAM, frozenset({"endpoint"})),
    "trackflow_gateway_produce_duration_seconds": (HISTOGRAM, frozenset()),
    "trackflow_gateway_requests_in_flight": (GAUGE, frozenset()),
    "trackflow_gateway_request_size_bytes": (HISTOGRAM, frozenset()),
    "trackflow_gateway_kafka_ready": (GAUGE, frozenset()),
    # workers (Prometheus job trackflow-worker)
    "trackflow_stage_events_total": (COUNTER, frozenset({"stage", "outcome"})),
    "trackflow_stage_duration_seconds": (HISTOGRAM, frozenset({"stage"})),
    "trackflow_failed_events_total": (COUNTER, frozenset({"stage", "reason"})),
    "trackflow_consumer_lag": (GAUGE, frozenset({"topic", "partition"})),
    "trackflow_end_to_end_latency_seconds": (HISTOGRAM, frozenset()),
    "trackflow_merges_total": (COUNTER, frozenset()),
    "trackflow_identity_conflicts_total": (COUNTER, frozenset({"reason"})),
    "trackflow_webhook_deliveries_total": (COUNTER, frozenset({"outcome", "attempt"})),
    "trackflow_rule_matches_total": (COUNTER, frozenset({"rule"})),
    "trackflow_store_batch_size": (HISTOGRAM, frozenset()),
    "trackflow_store_write_duration_seconds": (HISTOGRAM, frozenset()),
    "trackflow_worker_ready": (GAUGE, frozenset()),
}
SCRAPE_JOBS = {"trackflow-gateway": 8686, "trackflow-worker": 8687}
# Labels every scraped series has, besides its own: target labels and histogram buckets.
TARGET_LABELS = frozenset({"job", "instance", "le"})
# Series that are not trackflow's but that alerts may use.
OTHER_SERIES = {"up": frozenset({"job", "instance"})}

REQUIRED_ALERTS = {
    # alert name -> a metric its expression must use
    "TrackflowGatewayHighErrorRatio": "trackflow_gateway_requests_total",
    "TrackflowKafkaUnavailable": "trackflow_gateway_kafka_ready",
    "TrackflowConsumerLagGrowing": "trackflow_consumer_lag",
    "TrackflowFailedEventsHigh": "trackflow_failed_events_total",
    "TrackflowEndToEndLatencyHigh": "trackflow_end_to_end_latency_seconds_bucket",
    "TrackflowWebhookDeadLetters": "trackflow_webhook_deliveries_total",
}
SEVERITIES = {"critical", "warning"}

_METRIC_NAME = re.compile(r"\btrackflow_[a-z0-9_]+\b")
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*\.?([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# ---------------------------------------------------------------------------------------------
# promtool
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: install it (Debian: `apt-get install -y "
            "--no-install-recommends prometheus`, which puts it at /usr/bin/promtool)"
        )
    return path


def _run_promtool(promtool: str, *args: str, cwd: Path = PROMETHEUS) -> str:
    proc = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-kubernetes.yml"])
def test_promtool_check_config(promtool: str, config: str) -> None:
    _run_promtool(promtool, "check", "config", config)


def test_promtool_check_rules(promtool: str) -> None:
    _run_promtool(promtool, "check", "rules", "alerts.yml")


def test_promtool_test_rules(promtool: str) -> None:
    output = _run_promtool(promtool, "test", "rules", "alerts_test.yml")
    assert "SUCCESS" in output


# ---------------------------------------------------------------------------------------------
# Prometheus configuration and alert rules
# ---------------------------------------------------------------------------------------------
def _alert_rules() -> list[dict[str, Any]]:
    groups = _load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-kubernetes.yml"])
def test_scrape_config_has_both_jobs_and_loads_the_alerts(config: str) -> None:
    doc = _load_yaml(PROMETHEUS / config)
    assert doc["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    for name, port in SCRAPE_JOBS.items():
        assert name in jobs, f"{config}: no scrape job {name}"
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"
        sd = jobs[name].get("static_configs") or jobs[name].get("dns_sd_configs")
        ports = {int(t.rsplit(":", 1)[1]) for s in sd for t in s.get("targets", [])}
        ports |= {int(s["port"]) for s in sd if "port" in s}
        assert ports == {port}, f"{config}: job {name} scrapes ports {ports}, expected {port}"


def test_kubernetes_scrape_names_are_the_headless_services() -> None:
    doc = _load_yaml(PROMETHEUS / "prometheus-kubernetes.yml")
    services = {
        d["metadata"]["name"]: d
        for d in _k8s_documents()
        if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"
    }
    for job in doc["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                service_name, namespace = name.split(".")[:2]
                assert service_name in services, f"{name}: no headless Service {service_name}"
                service = services[service_name]
                assert service["metadata"]["namespace"] == namespace
                assert service["spec"].get("publishNotReadyAddresses") is True
                assert sd["port"] in {p["port"] for p in service["spec"]["ports"]}


def test_required_alerts_exist() -> None:
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    for name, metric in REQUIRED_ALERTS.items():
        assert name in rules, f"alerts.yml has no {name}"
        assert metric in rules[name]["expr"], f"{name} does not use {metric}"
    assert "> 1" in rules["TrackflowEndToEndLatencyHigh"]["expr"]  # the 1 s p99 target
    assert "histogram_quantile(0.99" in rules["TrackflowEndToEndLatencyHigh"]["expr"]
    assert 'outcome="dead_letter"' in rules["TrackflowWebhookDeadLetters"]["expr"]


def test_every_alert_has_for_severity_and_annotations() -> None:
    rules = _alert_rules()
    assert rules
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for:`"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), f"{name}: no summary"
        assert annotations.get("description", "").strip(), f"{name}: no description"


def test_every_alert_is_proven_to_fire_by_a_unit_test() -> None:
    tests = _load_yaml(PROMETHEUS / "alerts_test.yml")
    assert tests["rule_files"] == ["alerts.yml"]
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    missing = {rule["alert"] for rule in _alert_rules()} - fired
    assert not missing, f"alerts without a firing test in alerts_test.yml: {sorted(missing)}"


def test_every_alert_is_documented_in_the_deploy_readme() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    missing = [rule["alert"] for rule in _alert_rules() if rule["alert"] not in readme]
    assert not missing, f"deploy/README.md does not explain {missing}"


# ---------------------------------------------------------------------------------------------
# The metrics contract, for alerts and dashboard alike
# ---------------------------------------------------------------------------------------------
def _base_metric(name: str) -> str | None:
    """The contract name that a series name belongs to, or None."""
    if name in METRICS:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base, ("",))[0] == HISTOGRAM:
            return base
    return None


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GRAFANA / "trackflow.json").read_text(encoding="utf-8"))
    return doc


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in _panels(_dashboard())
        for target in panel.get("targets", [])
    ]


def _queries() -> list[tuple[str, str, str]]:
    """(where, PromQL expression, text around it) for every alert and dashboard query."""
    queries = [
        (
            f"alert {rule['alert']}",
            rule["expr"],
            " ".join(str(v) for v in rule.get("annotations", {}).values()),
        )
        for rule in _alert_rules()
    ]
    queries += [
        (f"panel {title!r}", target["expr"], target.get("legendFormat", ""))
        for title, target in _dashboard_targets()
    ]
    return queries


def _exported_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """What the code registers today: name -> (type, labels), from the metrics classes."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase

    from ingest_gateway.metrics import GatewayMetrics
    from processors.metrics import WorkerMetrics

    exported = {}
    for cls in (GatewayMetrics, WorkerMetrics):
        holder = cls(CollectorRegistry())
        for metric in vars(holder).values():
            if isinstance(metric, MetricWrapperBase):
                kind = metric._type  # prometheus_client keeps these private
                name = metric._name + ("_total" if kind == COUNTER else "")
                exported[name] = (kind, frozenset(metric._labelnames))
    return exported


def test_every_metric_the_code_exports_is_in_the_contract() -> None:
    # The contract may list metrics of stages still to come; what the code exports must match.
    exported = _exported_metrics()
    assert exported, "no metrics found on GatewayMetrics/WorkerMetrics"
    for name, (kind, labels) in exported.items():
        assert name in METRICS, f"{name} is exported but not in the contract (METRICS)"
        assert METRICS[name] == (kind, labels), f"{name}: code {kind} {sorted(labels)}"


def test_alerts_and_dashboard_use_only_contract_metrics() -> None:
    for where, expr, text in _queries():
        for name in _METRIC_NAME.findall(expr + " " + text):
            assert _base_metric(name), f"{where}: {name} is not a metric trackflow exports"


def test_alerts_and_dashboard_use_only_labels_the_metrics_have() -> None:
    known = {name: labels | TARGET_LABELS for name, (_, labels) in METRICS.items()}
    known.update({name: labels | TARGET_LABELS for name, labels in OTHER_SERIES.items()})
    for where, expr, text in _queries():
        used_labels: set[str] = set()
        for series, matchers in _SELECTOR.findall(expr):
            base = _base_metric(series) or series
            assert base in known, f"{where}: unknown series {series}"
            labels = set(_MATCHER.findall(matchers))
            assert labels <= known[base], f"{where}: {series} has no label {labels - known[base]}"
            used_labels |= known[base]
        for name in _METRIC_NAME.findall(expr):
            used_labels |= known.get(_base_metric(name) or "", set())
        grouping = {
            label.strip()
            for group in _GROUPING.findall(expr)
            for label in group.split(",")
            if label.strip()
        }
        legend = set(_LEGEND_LABEL.findall(text)) if where.startswith("panel") else set()
        assert grouping | legend <= used_labels, (
            f"{where}: label {sorted((grouping | legend) - used_labels)} is on none of its metrics"
        )


# ---------------------------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------------------------
def test_dashboard_json_is_well_formed() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    panels = list(_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["expr"].strip(), panel["title"]
            # Queries follow the dashboard's data source variable, not a fixed uid.
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_dashboard_shows_the_required_views() -> None:
    exprs = [target["expr"] for _, target in _dashboard_targets()]

    def has(*parts: str) -> bool:
        return any(all(part in expr for part in parts) for expr in exprs)

    assert has("trackflow_stage_events_total", "by (stage"), "throughput per stage"
    assert has("trackflow_consumer_lag"), "consumer lag"
    assert has("histogram_quantile(0.5,", "trackflow_end_to_end_latency_seconds_bucket"), "p50"
    assert has("histogram_quantile(0.99,", "trackflow_end_to_end_latency_seconds_bucket"), "p99"
    assert has("trackflow_gateway_requests_total", "by (status)"), "gateway requests by status"
    assert has("trackflow_failed_events_total", "by (stage, reason)"), "failures by stage/reason"
    assert has("trackflow_merges_total"), "merges"


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool has no offline query parser, but it parses recording rules: one per query.
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": target["expr"].replace("$__rate_interval", "5m"),
        }
        for i, (_, target) in enumerate(_dashboard_targets())
    ]
    assert rules
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run_promtool(promtool, "check", "rules", str(path), cwd=tmp_path)


def test_grafana_provisioning_matches_compose() -> None:
    services = _compose()["services"]
    datasources = _load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in services
    providers = _load_yaml(GRAFANA / "provisioning" / "dashboards" / "trackflow.yml")
    (provider,) = providers["providers"]
    dashboards_dir = provider["options"]["path"]
    mounts = _bind_mounts(services["grafana"])
    assert mounts["./grafana/trackflow.json"] == f"{dashboards_dir}/trackflow.json"
    assert mounts["./grafana/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["./grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"


# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------
K8S_VERSIONS = ("1.30.0", "1.37.0")
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"


@cache
def _k8s_files() -> tuple[Path, ...]:
    return tuple(sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml")))


def _k8s_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in _k8s_files()
        for doc in _load_all_yaml(path)
        if doc.get("apiVersion") != KUSTOMIZE_API
    ]


def _k8s_cases() -> list[Any]:
    return [
        pytest.param(
            doc, version, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}@{version}"
        )
        for path in _k8s_files()
        for doc in _load_all_yaml(path)
        if doc.get("apiVersion") != KUSTOMIZE_API
        for version in K8S_VERSIONS
    ]


@pytest.mark.parametrize(("doc", "version"), _k8s_cases())
def test_k8s_document_matches_the_kubernetes_schema(doc: dict[str, Any], version: str) -> None:
    # strict: unknown fields (a misspelt readinessProbe) are errors too.
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")


def test_k8s_has_every_required_object() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _k8s_documents()}
    required = {
        ("Namespace", "trackflow"),
        ("ConfigMap", "trackflow-config"),
        ("Secret", "trackflow-secrets"),
        ("Deployment", "trackflow-gateway"),
        ("HorizontalPodAutoscaler", "trackflow-gateway"),
        ("Service", "trackflow-gateway"),
        ("PodDisruptionBudget", "trackflow-gateway"),
        ("Deployment", "trackflow-worker"),
        ("Service", "trackflow-worker"),
        ("PodDisruptionBudget", "trackflow-worker"),
        ("Job", "trackflow-migrate"),
    }
    assert required <= kinds, f"missing: {sorted(required - kinds)}"
    for doc in _k8s_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "trackflow", doc["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _load_yaml(K8S / "kustomization.yaml")
    assert kustomization["apiVersion"] == KUSTOMIZE_API
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    manifests = {p.name for p in _k8s_files()} - {"kustomization.yaml"}
    assert set(resources) == manifests
    images = {image["name"] for image in kustomization.get("images", [])}
    used = {c["image"].split(":")[0] for _, c in _k8s_containers()}
    assert used <= images, "every image the manifests use can be set in kustomization.yaml"


def _pod_templates() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (doc, doc["spec"]["template"])
        for doc in _k8s_documents()
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}
    ]


def _k8s_containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}", container)
        for doc, template in _pod_templates()
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]
    ]


def _workload(name: str) -> dict[str, Any]:
    (doc,) = [
        d for d in _k8s_documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    ]
    return doc


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_k8s_selectors_and_references_resolve() -> None:
    docs = _k8s_documents()
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    templates = [template["metadata"]["labels"] for _, template in _pod_templates()]
    for deployment in by_kind["Deployment"].values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert _selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
    for name, service in by_kind["Service"].items():
        selected = [labels for labels in templates if _selects(service["spec"]["selector"], labels)]
        assert selected, f"Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            pods = [
                d
                for d in by_kind["Deployment"].values()
                if _selects(
                    service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]
                )
            ]
            for deployment in pods:
                ports = [
                    p
                    for c in deployment["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports", [])
                ]
                assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (
                    f"Service {name}: no container port {target}"
                )
    for name, pdb in by_kind["PodDisruptionBudget"].items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            _selects(selector, d["spec"]["template"]["metadata"]["labels"])
            for d in by_kind["Deployment"].values()
        ), f"PodDisruptionBudget {name} selects no Deployment"
    for name, hpa in by_kind["HorizontalPodAutoscaler"].items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] in by_kind[target["kind"]], f"HPA {name}: no {target}"
    for where, container in _k8s_containers():
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in by_kind["ConfigMap"], where
            if "secretRef" in source:
                assert source["secretRef"]["name"] in by_kind["Secret"], where
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                secret = by_kind["Secret"][ref["name"]]
                keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                assert ref["key"] in keys, f"{where}: Secret {ref['name']} has no {ref['key']}"


def test_k8s_gateway_probes_autoscaling_and_budget() -> None:
    gateway = _workload("trackflow-gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["gateway"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "replicas" not in gateway["spec"], "the HorizontalPodAutoscaler owns the count"
    (hpa,) = [d for d in _k8s_documents() if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "trackflow-gateway"
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert container["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"


def test_k8s_worker_probes_and_replicas() -> None:
    worker = _workload("trackflow-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["worker"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = _configmap_data()
    assert worker["spec"]["replicas"] <= int(config["TRACKFLOW_TOPIC_PARTITIONS"])
    # A surge pod at replicas == partitions would never turn ready and would stall a rollout.
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_k8s_pods_are_hardened_and_sized() -> None:
    for doc, template in _pod_templates():
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] >= 1000, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        # Service links would set TRACKFLOW_GATEWAY_PORT / TRACKFLOW_WORKER_PORT to tcp://…
        assert spec["enableServiceLinks"] is False, name
        assert spec["automountServiceAccountToken"] is False, name
    for where, container in _k8s_containers():
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["capabilities"]["drop"] == ["ALL"], where
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert "memory" in resources["limits"], where
        assert container["args"][0] in trackflow_cli.commands, where
        if container["args"][0] in {"gateway", "worker"}:
            assert container["ports"], where
            assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}, where


def _configmap_data() -> dict[str, str]:
    (config,) = [d for d in _k8s_documents() if d["kind"] == "ConfigMap"]
    data: dict[str, str] = config["data"]
    return data


def _setting_names() -> set[str]:
    return {f"TRACKFLOW_{name.upper()}" for name in Settings.model_fields}


def test_k8s_settings_are_real_and_the_secret_stays_secret() -> None:
    data = _configmap_data()
    assert set(data) <= _setting_names(), f"unknown settings {set(data) - _setting_names()}"
    assert "TRACKFLOW_DATABASE_URL" not in data, "the database URL belongs in the Secret"
    assert data["TRACKFLOW_LOG_FORMAT"] == "json"
    for where, container in _k8s_containers():
        for env in container.get("env", []):
            assert env["name"] in _setting_names(), f"{where}: {env['name']}"
            if env["name"] == "TRACKFLOW_DATABASE_URL":
                assert "value" not in env, f"{where}: the database URL must come from the Secret"
                assert env["valueFrom"]["secretKeyRef"]["name"] == "trackflow-secrets"
        if container["args"][0] not in {"worker", "migrate"}:
            names = {env["name"] for env in container.get("env", [])}
            assert "TRACKFLOW_DATABASE_URL" not in names, f"{where} needs no database secret"
    migrate = [
        c for where, c in _k8s_containers() if where.startswith("Job/") and c["args"] == ["migrate"]
    ]
    assert migrate, "a Job runs `trackflow migrate`"


# ---------------------------------------------------------------------------------------------
# Docker Compose
# ---------------------------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = _load_yaml(COMPOSE)
    return doc


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[source] = target
    return mounts


def _one_off(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def test_compose_matches_the_compose_spec_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_dependencies_exist_and_wait_for_the_right_condition() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            expected = (
                "service_completed_successfully"
                if _one_off(services[dependency])
                else "service_healthy"
            )
            assert spec["condition"] == expected, f"{name} -> {dependency}"


def test_compose_long_running_services_have_healthchecks() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if _one_off(service):
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck and not healthcheck.get("disable"), f"{name}: no healthcheck"
        assert healthcheck["test"], name
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, name


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["postgres"]["image"].split(":")[1].split(".")[0] == "15"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "ports" not in services["worker"], "fixed host ports do not work with replicas"
    assert {"prometheus", "grafana"} <= set(services)
    commands = {name: service.get("command") for name, service in services.items()}
    for name in ("migrate", "topics", "gateway", "worker"):
        assert commands[name] == [name]
        assert commands[name][0] in trackflow_cli.commands
    assert _one_off(services["migrate"]) and _one_off(services["topics"])
    gateway_check = " ".join(services["gateway"]["healthcheck"]["test"])
    assert "/readyz" in gateway_check
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image {image}"


def test_compose_trackflow_settings_are_real() -> None:
    names = _setting_names()
    for name, service in _compose()["services"].items():
        env = service.get("environment", {})
        for key in env:
            if key.startswith("TRACKFLOW_"):
                assert key in names, f"{name}: {key} is not a trackflow setting"
        if service.get("command", [None])[0] in trackflow_cli.commands:
            assert env["TRACKFLOW_LOG_FORMAT"] == "json", name
            assert env["TRACKFLOW_KAFKA_BOOTSTRAP"] == "kafka:9092", name
            uses_database = service["command"][0] in {"worker", "migrate"}
            assert ("TRACKFLOW_DATABASE_URL" in env) == uses_database, (
                f"{name}: the database URL goes to the worker and migrate only"
            )


def test_compose_bind_mounts_exist_and_prometheus_gets_its_rules() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for source in _bind_mounts(service):
            assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    mounts = _bind_mounts(services["prometheus"])
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    gateway_target = _load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"][0]
    assert gateway_target["static_configs"][0]["targets"] == ["gateway:8686"]
    assert "gateway" in services and "worker" in services


def test_compose_schema_is_vendored_with_its_licence() -> None:
    licence = (DEPLOY / "schemas" / "LICENSE.compose-spec").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0" in licence
    notes = (DEPLOY / "schemas" / "README.md").read_text(encoding="utf-8")
    assert "compose-spec.json" in notes and "Apache" in notes


# ---------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# ---------------------------------------------------------------------------------------------
def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match, plus `**` for any depth)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _in_build_context(relative: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for raw in _dockerignore_patterns():
        negated = raw.startswith("!")
        regex = _pattern_regex(raw.removeprefix("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = negated
    return included


def test_dockerfile_builds_a_slim_non_root_trackflow_image() -> None:
    instructions = _dockerfile_instructions()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1]
        for k, rest in instructions
        if k == "ARG" and "=" in rest
    }
    bases = [
        rest.split()[0].replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", ""))
        for k, rest in instructions
        if k == "FROM"
    ]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    runs = " ".join(rest for k, rest in instructions if k == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "the image installs the project with pip"
    users = [rest for k, rest in instructions if k == "USER"]
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) >= 1000, "a numeric uid lets Kubernetes check runAsNonRoot"
    entrypoint = [rest for k, rest in instructions if k == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["trackflow"]
    k8s_uids = {t["spec"]["securityContext"]["runAsUser"] for _, t in _pod_templates()}
    assert k8s_uids == {int(user)}


def test_build_context_holds_what_pip_install_needs_and_nothing_local() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        for path in ROOT.iterdir():
            if (
                path.is_dir()
                and fnmatch.fnmatch(path.name, pattern)
                and (path / "__init__.py").exists()
            ):
                needed += [
                    p.relative_to(ROOT).as_posix()
                    for p in path.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts
                ]
    assert any(name.endswith(".sql") for name in needed), "the migrations ship in the package"
    for name in needed:
        assert _in_build_context(name), (
            f"{name} is needed by `pip install .` but .dockerignore drops it"
        )
    for name in (
        ".venv/bin/python",
        ".trackflow/kafka/server.properties",
        ".git/HEAD",
        "tests/unit/test_deploy.py",
        "trackflow/__pycache__/cli.cpython-311.pyc",
    ):
        assert not _in_build_context(name), f"{name} must stay out of the build context"
    copied = [
        rest.split()[:-1]
        for k, rest in _dockerfile_instructions()
        if k == "COPY" and "--from" not in rest
    ]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists() and _in_build_context(source), f"COPY {source}"
