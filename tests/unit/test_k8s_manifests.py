"""Kubernetes manifests render with Kustomize and keep the pod hardening and probes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
PORTS = {"embedder": 50051, "indexer": 50052, "ranker": 50053}
GRPC_NAMES = {"embedder": "kinship.v1.Embedder", "indexer": "kinship.v1.Indexer", "ranker": "kinship.v1.KinshipRanker"}


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if IN_CI:
            pytest.fail("kubectl is needed to render the manifests in CI")
        pytest.skip("kubectl not installed: cannot render deploy/k8s")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / "base")], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _deployments(docs):
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in docs if d["kind"] == "Deployment"}


def test_one_deployment_and_headless_service_per_service(rendered) -> None:
    deployments = _deployments(rendered)
    assert set(deployments) == set(PORTS)
    services = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Service"}
    for name, port in PORTS.items():
        svc = services[f"kinship-{name}"]
        assert svc["spec"]["clusterIP"] == "None"
        assert svc["spec"]["ports"][0]["port"] == port


def test_pods_are_hardened_and_probed_over_grpc(rendered) -> None:
    for name, dep in _deployments(rendered).items():
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        grace = int(next(e["value"] for e in spec["containers"][0]["env"] if e["name"] == "KINSHIP_GRACE_SECONDS"))
        assert spec["terminationGracePeriodSeconds"] > grace, "the pod must outlive the drain"
        (container,) = spec["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["readinessProbe"]["grpc"] == {"port": PORTS[name], "service": GRPC_NAMES[name]}
        assert container["livenessProbe"]["grpc"]["port"] == PORTS[name]
        assert "service" not in container["livenessProbe"]["grpc"], "liveness checks the process only"
        assert container["args"] == ["serve", name]


def test_the_embedder_and_ranker_read_one_artifacts_claim_read_only(rendered) -> None:
    (claim,) = [d for d in rendered if d["kind"] == "PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == "kinship-artifacts"
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"], "every replica mounts it, none writes"
    deployments = _deployments(rendered)
    for name in ("embedder", "ranker"):
        spec = deployments[name]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = [
            m
            for m in container["volumeMounts"]
            if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == "kinship-artifacts"
        ]
        assert len(mounts) == 1, f"{name} must mount the kinship-artifacts claim once"
        (mount,) = mounts
        assert mount.get("readOnly") is True, f"{name} must not be able to write artifacts"
        assert volumes[mount["name"]]["persistentVolumeClaim"].get("readOnly") is True
        assert env.get("KINSHIP_ARTIFACTS_DIR") == mount["mountPath"], f"{name} must look for artifacts in the mount"
    indexer = deployments["indexer"]["spec"]["template"]["spec"]
    assert all("persistentVolumeClaim" not in v for v in indexer["volumes"]), "the indexer has no use for artifacts"
