"""deploy/kubernetes/ and the Dockerfile: valid against the Kubernetes schemas, offline, and in step
with the gateway (its config loads, the probes hit paths the admin port serves, the ports and the
config path are the ones the gateway and the image use)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.loading import load_gateway_config_text

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release the manifests are for: preStop `sleep` is beta and on by default
# from 1.30.
KUBERNETES_VERSION = "1.30"
# Values for the config's ${...}: in a pod they come from the Secret.
SECRET_ENV = {"TURNOUT_ADMIN_TOKEN": "t" * 32, "TURNOUT_REDIS_URL": "redis://redis:6379/0"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*.yaml") if path.name != "kustomization.yaml")


def _resource(kind: str) -> dict[str, Any]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for doc in _documents(DEPLOY / name):
            if doc["kind"] == kind:
                return doc
    raise AssertionError(f"no {kind} in the kustomization's resources")


@pytest.mark.parametrize("path", _manifests(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    for doc in _documents(path):
        # strict: a misspelt or misplaced field is an error, not ignored.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_names_every_object_the_issue_asks_for() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert all((DEPLOY / name).is_file() for name in kustomization["resources"])
    kinds = {doc["kind"] for name in kustomization["resources"] for doc in _documents(DEPLOY / name)}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


def _container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _resource("Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _config_text() -> str:
    return str(_resource("ConfigMap")["data"]["gateway.yaml"])


def test_the_config_map_holds_a_config_the_gateway_loads() -> None:
    config = load_gateway_config_text(_config_text(), "gateway.yaml", ROOT, env=SECRET_ENV)
    assert config.listen.port == 8080 and config.admin.port == 9901
    assert config.admin.token == SECRET_ENV["TURNOUT_ADMIN_TOKEN"]
    assert config.state.backend == "redis"  # replicas share limits and events
    # Every ${VAR} the config reads is in the Secret the pod takes its environment from.
    wanted = set(re.findall(r"\$\{(\w+)", _config_text()))
    assert wanted <= set(_resource("Secret")["stringData"])


def test_the_container_runs_the_mounted_config_on_the_gateways_ports() -> None:
    container = _container()
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert config_path.parent == Path(mount["mountPath"])
    assert config_path.name in _resource("ConfigMap")["data"]
    config = load_gateway_config_text(_config_text(), "gateway.yaml", ROOT, env=SECRET_ENV)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": config.listen.port, "admin": config.admin.port}
    # One gateway process per CPU the pod asks for.
    assert int(args[args.index("--processes") + 1]) == int(container["resources"]["requests"]["cpu"])


def test_the_probes_ask_paths_the_admin_port_serves_without_a_token() -> None:
    from gateway.supervisor_admin import build_supervisor_admin

    app = build_supervisor_admin(None, "token")  # type: ignore[arg-type]  # routes only, never served
    served = {resource.canonical for resource in app.router.resources()}
    container = _container()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "admin" and get["path"] in served
        assert not get["path"].startswith(("/admin", "/metrics"))  # the token guards only those
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_pod_drains_within_its_grace_period() -> None:
    spec = _resource("Deployment")["spec"]["template"]["spec"]
    config = load_gateway_config_text(_config_text(), "gateway.yaml", ROOT, env=SECRET_ENV)
    pause = _container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause + config.listen.drain_timeout < spec["terminationGracePeriodSeconds"]
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_the_services_send_traffic_to_the_named_ports() -> None:
    service = _resource("Service")
    assert {port["targetPort"] for port in service["spec"]["ports"]} == {"http", "admin"}
    labels = _resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = _resource("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert _resource("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "turnout"


def test_the_headless_example_is_the_cluster_the_config_resolves() -> None:
    (service,) = _documents(DEPLOY / "examples" / "model-server-headless.yaml")
    assert service["spec"]["clusterIP"] == "None"
    config = load_gateway_config_text(_config_text(), "gateway.yaml", ROOT, env=SECRET_ENV)
    name = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    port = service["spec"]["ports"][0]["port"]
    assert [e.address for e in config.clusters["models"].endpoints] == [f"{name}:{port}"]


def test_the_image_is_non_root_and_serves_the_gateways_ports() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\S+)", final_stage, re.MULTILINE)
    assert user is not None and not user.group(1).startswith(("root", "0"))
    expose = re.search(r"^EXPOSE (.+)$", final_stage, re.MULTILINE)
    assert expose is not None and expose.group(1).split() == ["8080", "9901"]
    assert "/etc/turnout/gateway.yaml" in final_stage  # where deployment.yaml mounts the config
    assert "gcc" not in final_stage  # the compiler stays in the build stage
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
