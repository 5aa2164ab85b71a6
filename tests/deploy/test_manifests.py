"""Deployment files against their schemas (offline) and against each other.

The schemas ship with pip packages, so nothing is downloaded: the Compose Specification is
vendored by check-jsonschema, the Kubernetes OpenAPI schemas by kubernetes-validate. Each
validator is also shown a broken file, so a validator that accepts everything fails here.
Cross-file checks catch what no schema can: a setting name the service does not have, a
Prometheus target that is not a compose service, a Service selecting no pod.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.settings import Settings
from tests.paths import ROOT

COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"  # oldest version we support (autoscaling/v2, native preStop sleep)
SETTING_NAMES = {f"SEGINT_{name.upper()}" for name in Settings.model_fields}
REPLICAS = ("segint-1", "segint-2")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*cmd, str(path)], capture_output=True, text=True, check=False)


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in k8s_documents() if d["kind"] == kind]
    return doc


def journal_dir(env: dict[str, str]) -> Path:
    path = env.get("SEGINT_JOURNAL_PATH")
    assert path, "SEGINT_JOURNAL_PATH is not set: outage events would live in memory only"
    return Path(path).parent


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_matches_the_compose_spec() -> None:
    """docker-compose.yml validates against the vendored Compose Specification schema."""
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """The same check fails on an unknown depends_on condition (the validator is live)."""
    compose = load_yaml(COMPOSE)
    compose["services"]["segint-1"]["depends_on"] = {"redis": {"condition": "when_ready"}}
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(compose))
    assert check_compose(broken).returncode != 0


def test_compose_topology() -> None:
    """Two replicas wait for a healthy Redis and mount artifacts read-only; HAProxy fronts
    exactly those replicas; locust only runs under the `load` profile."""
    services = load_yaml(COMPOSE)["services"]
    assert "test" in services["redis"]["healthcheck"]
    for name in REPLICAS:
        replica = services[name]
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
        mounts = [m for m in replica["volumes"] if m["target"] == "/artifacts"]
        assert len(mounts) == 1 and mounts[0]["read_only"] is True
        assert replica["environment"]["SEGINT_ARTIFACT_DIR"].startswith("/artifacts/")
    lb_env = services["lb"]["environment"]
    assert {lb_env["SEGINT_REPLICA_1"], lb_env["SEGINT_REPLICA_2"]} == {
        f"{name}:8000" for name in REPLICAS
    }
    assert services["locust"]["profiles"] == ["load"]
    assert services["train"]["profiles"] == ["train"]
    optional = {"locust", "train", "redis-cluster-init"} | {f"redis-node-{i}" for i in range(1, 7)}
    assert all("profiles" not in s for n, s in services.items() if n not in optional)


def test_compose_replicas_journal_to_their_own_named_volumes() -> None:
    """Each replica sets SEGINT_JOURNAL_PATH inside a named volume (declared at the top
    level, so it outlives the container) mounted writable, and no two replicas share one
    (the journal is locked by its one writer); the serving image creates the mount point
    owned by the service user, which a fresh named volume inherits."""
    compose = load_yaml(COMPOSE)
    volumes = []
    for name in REPLICAS:
        replica = compose["services"][name]
        folder = journal_dir(replica["environment"])
        (mount,) = [m for m in replica["volumes"] if Path(m["target"]) == folder]
        assert mount["type"] == "volume" and not mount.get("read_only", False)
        volume = mount["source"]
        assert volume in compose["volumes"], volume
        volumes.append(volume)
    assert len(set(volumes)) == len(REPLICAS), volumes
    serve = (ROOT / "Dockerfile").read_text().split("AS serve\n")[-1]
    assert f"mkdir -p {folder} && chown 10001:10001 {folder}" in serve


def test_k8s_pods_journal_to_their_own_persistent_volume() -> None:
    """The ConfigMap's SEGINT_JOURNAL_PATH lies on a volume of the StatefulSet's volume
    claim templates (one claim per pod, kept when the pod goes), mounted writable, and the
    pod's fsGroup lets the non-root service write it."""
    config = by_kind("ConfigMap")["data"]
    folder = journal_dir(config)
    sts = by_kind("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == folder]
    assert not mount.get("readOnly", False)
    claims = {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims
    assert mount["name"] not in {v["name"] for v in pod["volumes"]}  # not an emptyDir
    assert claims[mount["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_compose_publishes_ports_on_loopback_only_and_names_images_by_variables() -> None:
    """Every published port binds 127.0.0.1; each third-party image is a variable that
    defaults to the upstream image (deploy/images.sh sets the offline stand-ins)."""
    services = load_yaml(COMPOSE)["services"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published), published
    images = {n: s["image"] for n, s in services.items()}
    assert images["redis"] == "${REDIS_IMAGE:-redis:7.2-alpine}"
    assert images["lb"] == "${HAPROXY_IMAGE:-haproxy:2.6}"
    assert images["prometheus"].startswith("${PROMETHEUS_IMAGE:-prom/prometheus:")
    assert images["locust"].startswith("${LOCUST_IMAGE:-locustio/locust:")
    build = services["segint-1"]["build"]["args"]
    assert build["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim-bookworm}"


def test_compose_cluster_profile_has_six_nodes_and_an_init_job() -> None:
    """`--profile cluster`: six cluster-enabled Redis nodes and a job that joins them with
    one replica per master once all six are healthy."""
    services = load_yaml(COMPOSE)["services"]
    nodes = [n for n in services if n.startswith("redis-node-")]
    assert len(nodes) == 6
    for n in nodes:
        assert services[n]["profiles"] == ["cluster"]
        assert "--cluster-enabled" in services[n]["command"]
    init = services["redis-cluster-init"]
    assert set(init["depends_on"]) == set(nodes)
    script = (ROOT / "deploy" / "cluster-init.sh").read_text()
    assert "--cluster-replicas 1" in script


def test_dockerfile_parses_with_the_engines_builtin_frontend() -> None:
    """No `# syntax=` line (a registry pull) and no heredoc (Docker 20.10's frontend rejects
    both): the Dockerfile builds on an engine that reaches no registry."""
    for path in [ROOT / "Dockerfile", *sorted((ROOT / "deploy" / "images").glob("*.Dockerfile"))]:
        text = path.read_text()
        assert not text.lower().startswith("# syntax=") and "<<" not in text, path


def test_compose_sets_only_real_service_settings() -> None:
    """Every SEGINT_* variable given to the replicas is a field of service.settings.Settings."""
    env = load_yaml(COMPOSE)["services"]["segint-1"]["environment"]
    assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES


def test_redis_persists_with_aof() -> None:
    """deploy/redis.conf (used by compose and the local stack) turns the AOF on with fsync
    on every write, and compose keeps /data on a named volume."""
    conf = dict(
        line.split(None, 1)
        for line in (ROOT / "deploy" / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "always"
    redis = load_yaml(COMPOSE)["services"]["redis"]
    assert "redis-data:/data" in redis["volumes"]


def test_prometheus_scrapes_both_replicas() -> None:
    """deploy/prometheus.yml scrapes /metrics of each compose replica on its port."""
    config = load_yaml(ROOT / "deploy" / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "segint"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8000" for name in REPLICAS}
    services = load_yaml(COMPOSE)["services"]
    assert services["prometheus"]["volumes"][0]["source"] == "./deploy/prometheus.yml"


# --- Dockerfile and scripts --------------------------------------------------------------


def lint(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)
    assert exe, f"{tool} not found (pip install -e '.[dev]')"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False, cwd=ROOT)


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing on the Dockerfile and the offline stand-in images' files."""
    stand_ins = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deploy" / "images").glob("*"))
    result = lint("hadolint", "Dockerfile", *[p for p in stand_ins if p.endswith(".Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_serving_image_has_no_torch_and_one_runtime() -> None:
    """The serve stage copies only the serving virtualenv, runs as a numeric non-root user,
    probes /healthz, and the build argument picks exactly one ONNX Runtime extra."""
    text = (ROOT / "Dockerfile").read_text()
    serve = text[text.index("AS serve\n") :]
    assert "torch" not in serve and "COPY --from=serve-build /opt/venv /opt/venv" in serve
    assert "USER 10001:10001" in serve and "/healthz" in serve
    build = text[text.index("AS serve-build") : text.index("AS train")]
    assert "cpu) reqs=/src/requirements-serve-cpu.txt" in build
    assert 'gpu) reqs=/src/requirements-serve.txt; extra="onnxruntime-gpu[cuda,cudnn]"' in build
    train = text[text.index("AS train") : text.index("AS serve\n")]
    assert '"torch==2.13.0"' in train and "download.pytorch.org/whl/cpu" in train
    # segint export quantises the scorer to int8 with onnxruntime.quantization
    assert "-r /src/requirements-train.txt -r /src/requirements-export-cpu.txt" in train


def test_shell_scripts_pass_shellcheck() -> None:
    """shellcheck reports nothing on the local stack and training job scripts."""
    scripts = ["local-stack.sh", "train-export.sh", "images.sh", "stack.sh", "cluster-init.sh"]
    result = lint(
        "shellcheck", *[f"deploy/{s}" for s in scripts], "deploy/images/redis-entrypoint.sh"
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- deploy/k8s --------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml")))
def test_k8s_manifest_matches_the_kubernetes_schema(path: str) -> None:
    """Each manifest is valid (strict: no unknown fields) for Kubernetes 1.30."""
    if path == "kustomization.yaml":
        kustomization = load_yaml(K8S / path)
        listed = set(kustomization["resources"])
        # secret.yaml holds placeholders and is applied out of band, never by kustomize.
        on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.yaml"}
        assert listed == on_disk
        return
    for doc in yaml.safe_load_all((K8S / path).read_text()):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_validator_rejects_a_broken_manifest() -> None:
    """A misspelt probe field fails strict validation (the validator is live)."""
    workload = by_kind("StatefulSet")
    container = workload["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(workload, K8S_VERSION, strict=True)


def test_k8s_objects_fit_together() -> None:
    """Probes hit /readyz and /healthz; the Services and PDB select the StatefulSet's pods;
    the HPA scales that StatefulSet; envFrom names the ConfigMap and Secret that exist, whose
    keys are real service settings, the API key among the secrets."""
    deployment = by_kind("StatefulSet")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    labels = pod["metadata"]["labels"]
    selecting = [d for _, d in k8s_documents() if d["kind"] in ("Service", "PodDisruptionBudget")]
    assert len(selecting) == 3
    for doc in selecting:
        spec = doc["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), doc["metadata"]["name"]
    headless = [d for d in selecting if d["spec"].get("clusterIP") == "None"]
    assert [d["metadata"]["name"] for d in headless] == [deployment["spec"]["serviceName"]]
    hpa = by_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    config, secret = by_kind("ConfigMap"), by_kind("Secret")
    refs = {next(iter(r)): r[next(iter(r))]["name"] for r in container["envFrom"]}
    assert refs == {
        "configMapRef": config["metadata"]["name"],
        "secretRef": secret["metadata"]["name"],
    }
    keys = set(config["data"]) | set(secret["stringData"])
    assert keys <= SETTING_NAMES, keys - SETTING_NAMES
    assert "SEGINT_API_KEY" in secret["stringData"]


def test_compose_locust_command_uses_known_options() -> None:
    """The locust service runs headless with CSV + HTML reports, and every option it passes
    is one that locust accepts (`locust --help`) or that our locustfile adds."""
    command = load_yaml(COMPOSE)["services"]["locust"]["command"]
    flags = {arg for arg in command if arg.startswith("-")}
    assert {"--headless", "--rate", "--run-time", "--csv", "--html"} <= flags
    locust = Path(sys.executable).parent / "locust"
    help_text = subprocess.run(
        [str(locust), "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    # Options added by the locustfile do not show in --help (it is read after parsing -f).
    locustfile = (ROOT / "deploy" / "load" / "locustfile.py").read_text()
    ours = {
        f
        for f in flags
        if f'parser.add_argument(\n        "{f}"' in locustfile
        or f'parser.add_argument("{f}"' in locustfile
    }
    assert ours == {"--rate"}
    assert not [f for f in flags - ours if f not in help_text.split()]
