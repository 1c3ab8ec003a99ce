"""The Kubernetes base: the fields that matter read from the YAML (probes, resources, threads,
selectors, the HPA target, settings, placeholders), `kubectl kustomize` rendering it, and every
rendered object against the Kubernetes schemas (kubernetes-validate) where those are installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.core.config import Settings
from tests.deploy.deploy_testing import K8S, REPO, load_yaml, load_yaml_documents, run, tool

KUSTOMIZATION = K8S / "kustomization.yaml"
IMAGE = "plant-icd-serve"
SERVE_UID = 10001  # the Dockerfile's USER in the serve target


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """Every object in the base, by kind (each kind appears once)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for resource in load_yaml(KUSTOMIZATION)["resources"]:
        for document in load_yaml_documents(K8S / resource):
            assert document["kind"] not in by_kind, document["kind"]
            by_kind[document["kind"]] = document
    return by_kind


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    return found


def test_kustomization_lists_every_manifest():
    listed = load_yaml(KUSTOMIZATION)["resources"]
    present = sorted(path.name for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)
    assert sorted(listed) == present
    assert len(set(listed)) == len(listed)


def test_the_base_has_each_object(objects: dict[str, dict[str, Any]]):
    assert set(objects) == {
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


def test_selectors_match_the_pods(objects: dict[str, dict[str, Any]]):
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    # The migration Job's pods must not receive API traffic.
    job_labels = objects["Job"]["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= job_labels.items()


def test_probes_ports_and_one_worker(objects: dict[str, dict[str, Any]]):
    api = container(objects["Deployment"], "api")
    (port,) = api["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 8000)
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["args"] == ["plant-icd", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert not any("worker" in arg for arg in api["args"])
    (service_port,) = objects["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == "http"


def test_resources_and_threads_follow_the_cpu_request(objects: dict[str, dict[str, Any]]):
    api = container(objects["Deployment"], "api")
    requests, limits = api["resources"]["requests"], api["resources"]["limits"]
    assert {"cpu", "memory"} <= requests.keys() and {"cpu", "memory"} <= limits.keys()
    assert str(requests["cpu"]).isdigit(), "whole cores: the thread count is a whole number"
    assert requests["cpu"] == limits["cpu"]
    env = {entry["name"]: entry for entry in api["env"]}
    threads = env["PLANT_ICD_INFERENCE_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert threads == {"containerName": "api", "resource": "requests.cpu", "divisor": "1"}
    # One inference at a time, so threads x concurrency = the cores requested.
    config = objects["ConfigMap"]["data"]
    assert config["PLANT_ICD_MAX_CONCURRENT_INFERENCES"] == "1"
    assert "PLANT_ICD_INFERENCE_THREADS" not in config


def test_hpa_scales_the_deployment_on_cpu(objects: dict[str, dict[str, Any]]):
    hpa = objects["HorizontalPodAutoscaler"]
    deployment = objects["Deployment"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # The HPA owns the replica count; a `replicas` in the base would reset it on every apply.
    assert "replicas" not in deployment["spec"]


def test_configmap_holds_only_valid_settings(objects: dict[str, dict[str, Any]], tmp_path: Path):
    config: dict[str, str] = objects["ConfigMap"]["data"]
    fields = {f"PLANT_ICD_{name.upper()}": name for name in Settings.model_fields}
    assert set(config) <= set(fields), set(config) - set(fields)
    # The values pass the service's own validation (production included) given a real keys file.
    keys = tmp_path / "api-keys.json"
    sha = "0" * 64
    keys.write_text(json.dumps([{"name": "ehr", "role": "ehr", "sha256": sha}]), encoding="utf-8")
    values: dict[str, Any] = {fields[key]: value for key, value in config.items()}
    values["api_keys_file"] = keys
    settings = Settings(**values)
    assert settings.environment == "production"
    assert settings.max_concurrent_inferences == 1


def test_secret_is_placeholders_only(objects: dict[str, dict[str, Any]]):
    secret = objects["Secret"]
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text(encoding="utf-8")
    for key, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, key
    # The placeholder keys file is not valid JSON: a deployment that forgets it fails to start.
    with pytest.raises(json.JSONDecodeError):
        json.loads(secret["stringData"]["api-keys.json"])


def test_every_pod_reads_the_same_config_and_secret(objects: dict[str, dict[str, Any]]):
    workloads = [
        container(objects["Deployment"], "api"),
        pod_spec(objects["Deployment"])["initContainers"][0],
        container(objects["Job"], "migrate"),
    ]
    for spec in workloads:
        assert spec["image"] == IMAGE
        assert spec["envFrom"] == [{"configMapRef": {"name": "plant-icd-config"}}]
        env = {entry["name"]: entry for entry in spec["env"]}
        assert env["PLANT_ICD_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "plant-icd-secrets",
            "key": "database-url",
        }
        mounts = {mount["mountPath"] for mount in spec["volumeMounts"]}
        assert "/run/secrets/plant-icd" in mounts
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert container(objects["Job"], "migrate")["args"] == ["plant-icd", "db", "upgrade"]
    wait_for_migrations = pod_spec(objects["Deployment"])["initContainers"][0]
    assert "until plant-icd db current;" in wait_for_migrations["args"][-1]
    keys_path = objects["ConfigMap"]["data"]["PLANT_ICD_API_KEYS_FILE"]
    assert keys_path == "/run/secrets/plant-icd/api-keys.json"


def test_pods_run_as_the_image_user(objects: dict[str, dict[str, Any]]):
    for workload in (objects["Deployment"], objects["Job"]):
        context = pod_spec(workload)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == SERVE_UID
        assert pod_spec(workload)["automountServiceAccountToken"] is False
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert f"USER {SERVE_UID}:{SERVE_UID}" in dockerfile


def test_kustomize_renders_the_base_with_the_image():
    kubectl = tool("kubectl")
    result = run([kubectl, "kustomize", str(K8S)], timeout=60)
    assert result.returncode == 0, result.stderr
    yaml = pytest.importorskip("yaml")
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(rendered) == 7
    images = {
        c["image"]
        for doc in rendered
        if doc["kind"] in ("Deployment", "Job")
        for c in [
            *doc["spec"]["template"]["spec"]["containers"],
            *doc["spec"]["template"]["spec"].get("initContainers", []),
        ]
    }
    (image,) = load_yaml(KUSTOMIZATION)["images"]
    assert images == {f"{image['newName']}:{image['newTag']}"}
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "plant-icd"


def test_manifests_match_the_kubernetes_schemas():
    validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed: run scripts/install-test-prereqs.sh",
    )
    documents = [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path != KUSTOMIZATION
        for doc in load_yaml_documents(path)
    ]
    version = validate.latest_version()
    for document in documents:
        # strict: an unknown (e.g. misspelt) field is an error, not silently dropped.
        validate.validate(document, version, strict=True)
    broken = json.loads(json.dumps(documents[[d["kind"] for d in documents].index("Deployment")]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    with pytest.raises(validate.ValidationError):
        validate.validate(broken, version, strict=True)


def test_memory_and_timeouts_match_the_settings(objects: dict[str, dict[str, Any]]):
    """The memory limit was measured for this token budget and concurrency (issue 13); the
    readiness check gives up before the probe does."""
    config = objects["ConfigMap"]["data"]
    settings = Settings(
        **{
            key.removeprefix("PLANT_ICD_").lower(): value
            for key, value in config.items()
            if key.startswith("PLANT_ICD_")
            and key not in ("PLANT_ICD_API_KEYS_FILE", "PLANT_ICD_ENVIRONMENT")
        }
    )
    assert settings.inference_token_budget == 8192
    assert settings.max_concurrent_inferences == 1
    api = container(objects["Deployment"], "api")
    requests, limits = api["resources"]["requests"], api["resources"]["limits"]
    assert requests["memory"] == limits["memory"] == "1536Mi"
    assert settings.readiness_timeout_seconds < api["readinessProbe"]["timeoutSeconds"]
