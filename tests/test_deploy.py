"""Deployment artifacts, each proven with real tools: the image, Compose, Kubernetes, Temporal Cloud.

* The Kubernetes overlays are rendered with kustomize (``kubectl kustomize``) and every object is
  validated offline against the Kubernetes JSON schemas of PyPI's ``kubernetes-validate`` (strict:
  unknown fields are errors), for the oldest and the newest Kubernetes it knows; the custom
  resources (PodMonitor, KEDA) are checked for the fields their operators require.
* ``deploy/compose.yaml`` is validated with ``podman-compose config`` and its Prometheus config
  with ``promtool``.
* The container image is built with podman from a Debian base made by ``deploy/build-base.sh``
  (mmdebstrap: no registry of container images is reachable here), then the worker runs in it
  against this session's dev server and PostgreSQL (host networking), takes an event to an executed
  and verified action, and drains on SIGTERM (``podman stop``): a running action finishes on the
  stopping container, which exits 0.

Missing tools are installed: Debian packages (podman, runc, mmdebstrap, prometheus) with apt-get
as root or through ``sudo -n``, PyPI packages into this interpreter's environment. A test is skipped,
with the reason, only when that cannot be done.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from aiops.client import AiopsClient
from aiops.connection import connect_settings
from tests.helpers import agent_config, event, eventually
from tests.support.postgres_server import PostgresServer, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ["dev", "prod"]
CACHE = Path(os.environ.get("AIOPS_DEPLOY_CACHE", "/var/tmp/aiops-deploy-cache"))
BASE_IMAGE = "localhost/aiops-debian-python:bookworm"
IMAGE = "localhost/aiops-agents:deploy-test"
BUILD_ID = "deploy-test"
INSTALL_TIMEOUT = 900
BUILD_TIMEOUT = 900

# Kinds whose schemas are not Kubernetes' own: checked for their operators' required fields instead.
CUSTOM_KINDS = {"PodMonitor", "ServiceMonitor", "ScaledObject", "TriggerAuthentication"}


def _output(result: subprocess.CompletedProcess[str]) -> str:
    out, err = result.stdout[-6000:], result.stderr[-6000:]
    return f"exit status {result.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


def _run(command: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


# --- installing what is missing ------------------------------------------------------------------------


def _sudo(what: str) -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and _run(["sudo", "-n", "true"]).returncode == 0:
        return ["sudo", "-n"]
    pytest.skip(f"{what} is missing and installing Debian packages needs root or `sudo -n`")


def _apt_install(packages: list[str], what: str) -> None:
    """Install Debian packages (waiting for another apt to finish), or skip with the reason."""
    if shutil.which("apt-get") is None:
        pytest.skip(f"{what} is missing and there is no apt-get to install {' '.join(packages)}")
    apt = [*_sudo(what), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=600"]
    install = [*apt, "install", "-y", "-q", "--no-install-recommends", *packages]
    started = time.monotonic()
    result = _run(install, timeout=INSTALL_TIMEOUT)
    if result.returncode != 0:
        update = _run([*apt, "update", "-q"], timeout=INSTALL_TIMEOUT)
        if update.returncode != 0:
            pytest.skip(f"cannot install {' '.join(packages)}: apt-get update failed: {_output(update)}")
        result = _run(install, timeout=INSTALL_TIMEOUT)
    if result.returncode != 0:
        pytest.skip(f"cannot install {' '.join(packages)}: {_output(result)}")
    print(f"installed {' '.join(packages)} in {time.monotonic() - started:.1f}s")


def _pip_install(requirement: str) -> None:
    result = _run([sys.executable, "-m", "pip", "install", "-q", requirement], timeout=INSTALL_TIMEOUT)
    if result.returncode != 0:
        pytest.skip(f"cannot pip install {requirement}: {_output(result)}")


@pytest.fixture(scope="module")
def kustomize() -> list[str]:
    """The kustomize renderer: kubectl's built-in kustomize, or a standalone kustomize."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize") is None:
        # Bookworm packages no kustomize; a later Debian release might: try, then give the reason.
        apt = [*_sudo("kustomize"), "apt-get", "-o", "DPkg::Lock::Timeout=600"]
        _run([*apt, "install", "-y", "-q", "kustomize"], timeout=INSTALL_TIMEOUT)
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.skip(
        "no kustomize renderer: neither kubectl nor kustomize is installed, and this Debian release "
        "has no kustomize package (the Debian kubectl of this machine image comes with its base image)"
    )


@pytest.fixture(scope="module")
def validator() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        _pip_install("kubernetes-validate>=1.30,<2")
        importlib.invalidate_caches()
        import kubernetes_validate
    return kubernetes_validate


@pytest.fixture(scope="module")
def podman() -> str:
    """Debian's podman, with runc (the runtime that works here) and mmdebstrap (for the base)."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        _apt_install(missing, " and ".join(missing))
    return shutil.which("podman") or pytest.skip("podman is still missing after installing it")


@pytest.fixture(scope="module")
def podman_compose(podman: str) -> str:
    """PyPI's podman-compose (it asks podman for its version, so podman must be installed)."""
    beside = Path(sys.executable).parent / "podman-compose"
    if not beside.exists() and shutil.which("podman-compose") is None:
        _pip_install("podman-compose>=1.2,<2")
    return str(beside) if beside.exists() else shutil.which("podman-compose") or "podman-compose"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    try:
        from tests.test_observability_rules import _install_prometheus
    except ImportError:
        _apt_install(["prometheus"], "promtool")
        return shutil.which("promtool") or pytest.skip("promtool still missing after installing prometheus")
    return _install_prometheus()


# --- Kubernetes -----------------------------------------------------------------------------------------


def _render(kustomize: list[str], directory: Path) -> list[dict[str, Any]]:
    result = _run([*kustomize, str(directory)], timeout=60)
    assert result.returncode == 0, f"kustomize failed for {directory}:\n{_output(result)}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _variant(tmp_path: Path, overlay: str, components: list[str]) -> Path:
    """A copy of the overlay with the commented-out ``components`` switched on, as docs/deploy.md says."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    kustomization = copy / "overlays" / overlay / "kustomization.yaml"
    text = kustomization.read_text()
    for component in components:
        line = f"  # - ../../components/{component}"
        assert line in text, f"the {overlay} overlay should offer {component} as a commented-out line"
        text = text.replace(line, f"  - ../../components/{component}  #")
    kustomization.write_text(text)
    return kustomization.parent


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _validate_all(validator: Any, objects: list[dict[str, Any]]) -> list[str]:
    """Validate every built-in object (strict) against the oldest and newest schemas known."""
    versions = sorted(
        {
            p.name.removeprefix("v").removesuffix("-local-strict")
            for p in (Path(validator.__file__).parent / "kubernetes-json-schema").glob("v*-local-strict")
        },
        key=lambda v: tuple(int(x) for x in v.split(".")),
    )
    targets = [v for v in versions if tuple(int(x) for x in v.split(".")) >= (1, 29)][:1] + versions[-1:]
    problems = []
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in targets:
            try:
                validator.validate(obj, version, strict=True)
            except validator.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                problems.append(
                    f"{obj['kind']}/{obj['metadata']['name']} (k8s {version}) {path}: {err.message}"
                )
    return problems


def _check_custom(obj: dict[str, Any], pod_labels: dict[str, str], port_names: set[str]) -> None:
    kind, spec = obj["kind"], obj["spec"]
    if kind == "PodMonitor":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
        for endpoint in spec["podMetricsEndpoints"]:
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
        assert pod_labels[spec["jobLabel"]] == "aiops-worker", "alerts.yml selects job=aiops-worker"
    elif kind == "ScaledObject":
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"]["name"] == "aiops-worker"
        assert spec["minReplicaCount"] >= 1, "agents need a worker to wake their timers"
        for trigger in spec["triggers"]:
            assert trigger["type"] == "temporal"
            assert {"endpoint", "namespace", "taskQueue", "targetQueueSize"} <= trigger["metadata"].keys()
            assert all(isinstance(v, str) for v in trigger["metadata"].values()), "KEDA metadata are strings"
    elif kind == "TriggerAuthentication":
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert all({"parameter", "name", "key"} <= ref.keys() for ref in spec["secretTargetRef"])


def _check_worker(objects: list[dict[str, Any]], keda: bool) -> None:
    deployment = _one(objects, "Deployment", "aiops-worker")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "worker")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http-metrics"] == 9464
    args = container["args"]
    assert args[args.index("--http-host") + 1] == "0.0.0.0", "in a pod the probes come from outside"
    assert args[args.index("--http-port") + 1] == "9464"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == 9464
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30, "longer than the worker's 30 s drain"
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    api_key = env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert api_key["optional"] is True, "absent for clusters without an API key"
    image = container["image"]
    assert env["AIOPS_BUILD_ID"]["value"] == image.rsplit(":", 1)[1], "the build id is the image tag"
    config_names = {ref["configMapRef"]["name"] for ref in container["envFrom"]}
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in config_names]
    assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "AIOPS_TASK_QUEUE"} <= config["data"].keys()
    assert "TEMPORAL_API_KEY" not in config["data"], "even an empty API key switches TLS on"
    # Secrets referenced by name exist in the render (generated, dev) or are documented (prod).
    secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    if secrets:
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] in secrets
    pdb = _one(objects, "PodDisruptionBudget", "aiops-worker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    if keda:
        assert not hpas, "KEDA owns the scaling: no second autoscaler"
        _one(objects, "ScaledObject")
    else:
        assert _one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "aiops-worker"
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS and obj["metadata"]["name"] != "aiops-gateway":
            _check_custom(obj, labels, set(ports))


def _check_gateway(objects: list[dict[str, Any]]) -> None:
    """The HTTP gateway: its Deployment (probes on its own port), Service, routes ConfigMap and PDB."""
    from aiops.gateway.config import GatewayConfig

    deployment = _one(objects, "Deployment", "aiops-gateway")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "gateway")
    worker = _one(objects, "Deployment", "aiops-worker")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == worker["image"], "one image: the gateway is `aiops gateway` in it"
    assert container["command"] == ["aiops", "gateway"]
    args = container["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0", "in a pod the probes come from outside"
    assert args[args.index("--port") + 1] == "9470"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9470}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == 9470
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # Temporal settings are the workers': the same ConfigMap, the same optional API key.
    worker_config = {ref["configMapRef"]["name"] for ref in worker["envFrom"]}
    assert {ref["configMapRef"]["name"] for ref in container["envFrom"]} == worker_config
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    # The routes file comes from the ConfigMap, mounted as a directory so that edits reach the pod.
    routes_path = Path(args[args.index("--routes") + 1])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (routes_mount,) = [m for m in mounts.values() if m["mountPath"] == routes_path.parent.as_posix()]
    assert "subPath" not in routes_mount, "a subPath mount never sees ConfigMap updates (hot reload)"
    routes_map = _one(objects, "ConfigMap", volumes[routes_mount["name"]]["configMap"]["name"])
    config = GatewayConfig.model_validate(yaml.safe_load(routes_map["data"][routes_path.name]))
    # Every file: secret the routes refer to lies in a mounted Secret volume.
    secret_dirs = {m["mountPath"] for m in mounts.values() if "secret" in volumes[m["name"]]}
    for source in config.sources.values():
        for reference in (source.auth.token, source.auth.secret):
            if reference and reference.startswith("file:"):
                assert Path(reference.removeprefix("file:")).parent.as_posix() in secret_dirs, reference
    secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    if secrets:  # dev: generated; prod: created out of band and documented
        for name in secret_dirs:
            volume = next(volumes[m["name"]] for m in mounts.values() if m["mountPath"] == name)
            assert volume["secret"]["secretName"] in secrets
    service = _one(objects, "Service", "aiops-gateway")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(9470, "http")]
    pdb = _one(objects, "PodDisruptionBudget", "aiops-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitors = [o for o in objects if o["kind"] == "PodMonitor" and o["metadata"]["name"] == "aiops-gateway"]
    for monitor in monitors:
        spec = monitor["spec"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        assert [(e["port"], e["path"]) for e in spec["podMetricsEndpoints"]] == [("http", "/metrics")]
        assert labels[spec["jobLabel"]] == "aiops-gateway"


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
@pytest.mark.parametrize(
    ("overlay", "components"),
    [("dev", []), ("prod", []), ("prod", ["keda"]), ("prod", ["temporal-mtls"])],
    ids=["dev", "prod", "prod+keda", "prod+mtls"],
)
def test_kubernetes_overlays_render_and_validate_offline(
    kustomize: list[str], validator: Any, tmp_path: Path, overlay: str, components: list[str]
) -> None:
    directory = _variant(tmp_path, overlay, components) if components else KUBERNETES / "overlays" / overlay
    objects = _render(kustomize, directory)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "PodDisruptionBudget", "ConfigMap", "ServiceAccount", "Service"} <= kinds
    problems = _validate_all(validator, objects)
    assert not problems, "invalid Kubernetes objects:\n" + "\n".join(problems)
    _check_worker(objects, keda="keda" in components)
    _check_gateway(objects)
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {_one(objects, "Namespace")["metadata"]["name"]}, "one namespace per overlay"
    if "temporal-mtls" in components:
        container = _one(objects, "Deployment", "aiops-worker")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert Path(env["TEMPORAL_TLS_CLIENT_CERT_PATH"]).parent.as_posix() in mounts
        gateway = _one(objects, "Deployment", "aiops-gateway")["spec"]["template"]["spec"]["containers"][0]
        assert {e["name"]: e.get("value") for e in gateway["env"]}["TEMPORAL_TLS_CLIENT_CERT_PATH"] == (
            env["TEMPORAL_TLS_CLIENT_CERT_PATH"]
        ), "the gateway connects to Temporal with the same certificate"
    if overlay == "prod":
        assert {o["metadata"]["name"] for o in objects if o["kind"] == "PodMonitor"} == {
            "aiops-worker",
            "aiops-gateway",
        }
        assert not any(o["kind"] == "Secret" for o in objects), "production secrets are never rendered"


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_the_schema_validation_catches_a_broken_manifest(kustomize: list[str], validator: Any) -> None:
    """A control: the same validation fails on a misspelt field and on a wrongly typed value."""
    objects = _render(kustomize, KUBERNETES / "overlays" / "prod")
    deployment = json.loads(json.dumps(_one(objects, "Deployment", "aiops-worker")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    assert any("readinesProbe" in p for p in _validate_all(validator, [deployment]))
    budget = json.loads(json.dumps(_one(objects, "PodDisruptionBudget", "aiops-worker")))
    budget["spec"]["minAvailable"] = {"two": 2}
    assert any("minAvailable" in p for p in _validate_all(validator, [budget]))


# --- Compose ----------------------------------------------------------------------------------------


def _compose_config(podman_compose: str, **env: str) -> dict[str, Any]:
    result = _run(
        [podman_compose, "-f", str(DEPLOY / "compose.yaml"), "config"],
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, f"podman-compose config failed:\n{_output(result)}"
    return yaml.safe_load(result.stdout)


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_compose_file_is_valid_and_complete(podman_compose: str) -> None:
    config = _compose_config(podman_compose)
    services = config["services"]
    assert {"temporal", "postgres", "worker", "gateway", "prometheus", "grafana"} <= services.keys()
    worker = services["worker"]
    assert int(worker["deploy"]["replicas"]) == 2
    assert worker["build"]["dockerfile"] == "deploy/Containerfile"
    assert Path(worker["build"]["context"]).resolve() == ROOT
    assert "TEMPORAL_API_KEY" not in worker["environment"], "even an empty API key switches TLS on"
    assert worker["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert (
        int(
            _compose_config(podman_compose, AIOPS_WORKER_REPLICAS="4")["services"]["worker"]["deploy"][
                "replicas"
            ]
        )
        == 4
    )
    # Every file mounted from the repository exists, among them the alert rules and the dashboard.
    mounted = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which does not exist"
                mounted.append(path)
    assert ROOT / "observability/prometheus/alerts.yml" in mounted
    assert ROOT / "observability/grafana/aiops-dashboard.json" in mounted
    assert ROOT / "deploy/compose/gateway.yaml" in mounted
    # The gateway: same image, `aiops gateway` on 0.0.0.0:9470 with the mounted example routes.
    gateway = services["gateway"]
    assert gateway["image"] == worker["image"] and gateway["entrypoint"] == ["aiops", "gateway"]
    command = gateway["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "9470"
    routes = command[command.index("--routes") + 1]
    (mount,) = [v for v in gateway["volumes"] if v.split(":")[1] == routes]
    assert (DEPLOY / mount.split(":")[0]).resolve() == ROOT / "deploy/compose/gateway.yaml"
    assert any(str(p).endswith(":9470") for p in gateway["ports"])
    assert gateway["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    from aiops.gateway.config import GatewayConfig

    example = GatewayConfig.model_validate(yaml.safe_load((DEPLOY / "compose/gateway.yaml").read_text()))
    for source in example.sources.values():  # every env: secret of the example is given to the service
        for reference in (source.auth.token, source.auth.secret):
            if reference and reference.startswith("env:"):
                assert reference.removeprefix("env:") in gateway["environment"], reference
    # The dev server registers the framework's search attributes, or the worker refuses to start.
    from aiops.contracts.search_attributes import ALL, cli_type

    command = " ".join(services["temporal"]["command"])
    for attribute in ALL:
        assert f"--search-attribute={attribute.name}={cli_type(attribute)}" in command


@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_compose_prometheus_config_and_grafana_provisioning(promtool: str, tmp_path: Path) -> None:
    prometheus = yaml.safe_load((DEPLOY / "compose/prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert prometheus["scrape_configs"][0]["job_name"] == "aiops-worker", "alerts.yml selects this job"
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    gateway_targets = [t for c in jobs["aiops-gateway"]["static_configs"] for t in c["targets"]]
    assert gateway_targets == ["gateway:9470"] and jobs["aiops-gateway"]["metrics_path"] == "/metrics"
    # promtool with the rule file where the container mounts it (rewritten to this folder).
    shutil.copy(ROOT / "observability/prometheus/alerts.yml", tmp_path / "alerts.yml")
    prometheus["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    result = _run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, f"promtool check config failed:\n{_output(result)}"
    datasources = yaml.safe_load((DEPLOY / "compose/grafana/datasources.yml").read_text())["datasources"]
    assert datasources[0]["type"] == "prometheus" and datasources[0]["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "observability/grafana/aiops-dashboard.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert variable["query"] == "prometheus", "the dashboard picks any Prometheus data source"


# --- Temporal Cloud ---------------------------------------------------------------------------------


def _profile_variants() -> list[dict[str, str]]:
    """The example's active variables, and its commented mTLS variant as a second profile."""
    text = (DEPLOY / "temporal-cloud.env.example").read_text()
    active: dict[str, str] = {}
    mtls: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("# --- "):
            section = line
        match = re.fullmatch(r"(#\s*)?([A-Z_]+)=(\S*)", line.strip())
        if not match:
            continue
        commented, name, value = match.groups()
        if not commented:
            active[name] = value
        elif "mTLS" in section:
            mtls[name] = value
    return [active, mtls]


def test_temporal_cloud_profile_is_what_the_worker_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api_key, mtls = _profile_variants()
    assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"} == api_key.keys()
    assert {"TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"} <= mtls.keys()
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in api_key.items():
        monkeypatch.setenv(name, value)
    settings = connect_settings()
    assert settings["target_host"] == api_key["TEMPORAL_ADDRESS"]
    assert settings["namespace"] == api_key["TEMPORAL_NAMESPACE"]
    assert settings["api_key"] == api_key["TEMPORAL_API_KEY"] and settings["tls"] is True
    for name in api_key:
        monkeypatch.delenv(name)
    # The mTLS variant, with a real certificate and key where the paths point.
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    made = _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                 "-out", str(cert), "-days", "1", "-subj", "/CN=aiops-worker"])  # fmt: skip
    assert made.returncode == 0, _output(made)
    for name, value in mtls.items():
        path = {"TEMPORAL_TLS_CLIENT_CERT_PATH": cert, "TEMPORAL_TLS_CLIENT_KEY_PATH": key}.get(name)
        monkeypatch.setenv(name, str(path) if path else value)
    settings = connect_settings()
    assert settings["target_host"] == mtls["TEMPORAL_ADDRESS"]
    assert settings["tls"].client_cert == cert.read_bytes()
    assert settings["tls"].client_private_key == key.read_bytes()
    assert "api_key" not in settings


# --- the container image ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def podman_env(podman: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for podman here: runc, cgroupfs and no default ulimits (see RECIPES)."""
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf), "AIOPS_DEPLOY_CACHE": str(CACHE)}


def _podman(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run(["podman", *args], timeout=timeout, env=env)


def _host_pip_settings() -> list[str]:
    """Build options that give pip in the build what this host's pip uses to reach its index.

    The CA bundle (an intercepting proxy's CA, say) goes in as a build secret, never into a layer;
    an http(s) index other than PyPI as a build argument. Local ``file://`` indexes stay behind.
    """
    options = []
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            options += ["--secret", f"id=pip_cert,src={candidate}"]
            break
    index = (
        os.environ.get("PIP_INDEX_URL")
        or _run([sys.executable, "-m", "pip", "config", "get", "global.index-url"]).stdout.strip()
    )
    if index.startswith(("http://", "https://")):
        options += ["--build-arg", f"PIP_INDEX_URL={index}"]
    return options


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str]) -> Iterator[str]:
    started = time.monotonic()
    base = _run(["bash", str(DEPLOY / "build-base.sh"), BASE_IMAGE], timeout=BUILD_TIMEOUT, env=podman_env)
    assert base.returncode == 0, f"deploy/build-base.sh failed:\n{_output(base)}"
    base_seconds = time.monotonic() - started
    before = _podman(podman_env, "image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    started = time.monotonic()
    build = _podman(
        podman_env,
        "build",
        "--network", "host",
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg", f"AIOPS_BUILD_ID={BUILD_ID}",
        *_host_pip_settings(),
        "-f", str(DEPLOY / "Containerfile"),
        "-t", IMAGE,
        str(ROOT),
        timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    assert build.returncode == 0, f"podman build failed:\n{_output(build)}"
    print(f"base image ready in {base_seconds:.1f}s; image built in {time.monotonic() - started:.1f}s")
    after = _podman(podman_env, "image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    if before and before != after:
        _podman(podman_env, "rmi", before)  # the previous build of this tag, now untagged
    yield IMAGE


@pytest.mark.timeout(BUILD_TIMEOUT + INSTALL_TIMEOUT)
def test_the_image_runs_as_non_root_with_the_cli_beside_the_worker(
    image: str, podman_env: dict[str, str]
) -> None:
    inspected = json.loads(_podman(podman_env, "image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["aiops-worker"]
    assert config["StopSignal"] == "SIGTERM"
    assert f"AIOPS_BUILD_ID={BUILD_ID}" in config["Env"]
    run = ["run", "--rm", "--runtime", "runc", "--network", "host"]
    script = (
        "id -u; command -v pip gcc || true; aiops --help >/dev/null && aiops gateway --help >/dev/null "
        "&& temporal --version"
    )
    shell = _podman(podman_env, *run, "--entrypoint", "sh", image, "-c", script)
    assert shell.returncode == 0, _output(shell)
    lines = shell.stdout.splitlines()
    assert lines[0] == "10001" and lines[-1].startswith("temporal version"), shell.stdout
    assert not [line for line in lines[1:-1] if line.strip()], f"no pip or compiler at run time: {lines}"
    worker_help = _podman(podman_env, *run, image, "--help")
    assert worker_help.returncode == 0 and "--task-queue" in worker_help.stdout, _output(worker_help)


SLOW_AGENT = '''
"""A test agent for the deploy test: its action takes a few seconds, to be stopped mid-way."""

import asyncio

from agents import ActionResult, ActionType, AgentAction, BaseAgent, EventType, RiskLevel, register_agent


@register_agent("deploy_slow")
class SlowAgent(BaseAgent):
    def _get_subscribed_event_types(self):
        return [EventType.ALERT]

    async def _process_event_specific(self, event):
        return AgentAction(
            id="-", agent_id=self.agent_id, type=ActionType.RESTART_SERVICE,
            description=f"restart {event.source}", target_resources=[event.source],
            risk_level=RiskLevel.LOW, parameters={"sleep": event.data.get("sleep", 4)},
        )

    async def _execute_action_specific(self, action):
        await asyncio.sleep(float(action.parameters["sleep"]))
        return ActionResult(success=True, message=f"restarted {action.target_resources[0]}")
'''


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def _history(aiops: AiopsClient, workflow_id: str) -> list[Any]:
    return [h async for h in aiops.client.get_workflow_handle(workflow_id).fetch_history_events()]


@pytest.mark.timeout(BUILD_TIMEOUT + INSTALL_TIMEOUT + 300)
async def test_the_worker_container_executes_an_action_and_drains_on_sigterm(
    image: str, podman_env: dict[str, str], env: WorkflowEnvironment, postgres: PostgresServer, tmp_path: Path
) -> None:
    address = env.client.service_client.config.target_host
    # A database of its own, never migrated by the test process: the container must migrate it.
    database = f"aiops_deploy_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    url = postgres.url.rsplit("/", 1)[0] + "/" + database
    plugins = tmp_path / "plugins"
    plugins.mkdir(mode=0o755)
    (plugins / "deploy_slow_agent.py").write_text(SLOW_AGENT)
    plugins.chmod(0o755)
    (plugins / "deploy_slow_agent.py").chmod(0o644)
    task_queue = f"deploy-{uuid.uuid4().hex[:8]}"
    identity = f"aiops-container-{uuid.uuid4().hex[:8]}"
    name = f"aiops-deploy-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    run = _podman(
        podman_env,
        "run", "-d", "--name", name, "--runtime", "runc", "--network", "host",
        "-e", f"TEMPORAL_ADDRESS={address}",
        "-e", f"DATABASE_URL={url}",
        "-e", "AIOPS_HEALTH_EVERY=0",
        "-e", "AIOPS_LOG_FORMAT=text",
        "-e", "AIOPS_AGENT_MODULES=deploy_slow_agent",
        "-e", "PYTHONPATH=/plugins",
        "-v", f"{plugins}:/plugins:ro",
        image,
        "--task-queue", task_queue, "--identity", identity,
        "--http-host", "127.0.0.1", "--http-port", str(port),
    )  # fmt: skip
    assert run.returncode == 0, f"podman run failed:\n{_output(run)}"
    pool = None
    started_ids: list[str] = []
    try:

        def logs() -> str:
            result = _podman(podman_env, "logs", name)
            return result.stdout + result.stderr

        def state() -> dict[str, Any]:
            return json.loads(_podman(podman_env, "inspect", "--format", "{{json .State}}", name).stdout)

        deadline = time.monotonic() + 90
        while "worker ready" not in logs():
            assert state()["Running"], f"the worker container stopped:\n{logs()}"
            assert time.monotonic() < deadline, f"the worker container is not ready:\n{logs()}"
            await asyncio.sleep(0.5)
        status, body = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"] == {"temporal": "ok", "polling": "ok", "postgres": "ok"}
        assert (await asyncio.to_thread(_fetch, f"http://127.0.0.1:{port}/healthz"))[0] == 200

        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)  # no migration from here
        aiops = AiopsClient(env.client, task_queue, pool)

        # An event to an executed action: the example agent's low-risk drift runs on its own.
        config = agent_config("example")
        drift = event("infrastructure_drift", severity="low", resources=["aws_vpc.main"])
        await aiops.events.send(config.id, drift, config=config)
        action_id = aiops.approvals.action_id(config.id, drift.id)
        started_ids += [f"agent-{config.id}", action_id]
        record = await asyncio.wait_for(aiops.approvals.wait_for_action(action_id), 90)
        assert record.status in ("succeeded", "verified"), record
        assert record.result is not None and record.result.success and "aws_vpc.main" in record.result.message
        history = await _history(aiops, action_id)
        pollers = {
            h.activity_task_started_event_attributes.identity
            for h in history
            if h.HasField("activity_task_started_event_attributes")
        }
        assert pollers == {identity}, "every activity ran in the container"
        applied = {r["name"] for r in await pool.fetch("SELECT name FROM schema_migrations")}
        shipped = {
            p.name for d in ("activities", "aiops", "agents", "workflows") for p in (ROOT / d).rglob("*.sql")
        }
        assert applied == shipped, "the image ships and applies every migration"
        trail = await aiops.audit.rows(agent_id=config.id)
        assert trail, "the container's worker wrote the audit log"

        # SIGTERM while an action executes: it finishes on the stopping container, which exits 0.
        slow = agent_config("deploy_slow")
        alert = event("alert", severity="low", sleep=4, source="svc-a")
        await aiops.events.send(slow.id, alert, config=slow)
        slow_id = aiops.approvals.action_id(slow.id, alert.id)
        started_ids += [f"agent-{slow.id}", slow_id]
        await eventually(
            lambda: aiops.approvals.action(slow_id), lambda r: r.status == "executing", within=60
        )
        await asyncio.sleep(0.5)
        stopped_at = time.monotonic()
        stop = await asyncio.to_thread(_podman, podman_env, "stop", "--time", "60", name, timeout=90)
        took = time.monotonic() - stopped_at
        assert stop.returncode == 0, _output(stop)
        final = state()
        text = logs()
        assert final["ExitCode"] == 0, f"exit code {final['ExitCode']}:\n{text}"
        assert "shutting down: finishing running activities" in text, text
        assert took < 45, f"podman stop took {took:.1f}s: SIGTERM did not reach the worker"
        history = await _history(aiops, slow_id)
        completed = [h for h in history if h.HasField("activity_task_completed_event_attributes")]
        failed = [h for h in history if h.HasField("activity_task_failed_event_attributes")]
        assert len(completed) >= 2 and not failed, "plan and execute both completed on the stopping container"
        print(f"container drained and exited 0 in {took:.1f}s after SIGTERM")
    finally:
        _podman(podman_env, "rm", "-f", name)
        for workflow_id in started_ids:
            try:
                await env.client.get_workflow_handle(workflow_id).terminate("deploy test done")
            except Exception:  # already closed
                pass
        if pool is not None:
            await pool.close()
        admin = await asyncpg.connect(postgres.url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
