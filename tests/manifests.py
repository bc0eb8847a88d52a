"""Rendering deploy/k8s with Kustomize, and reading what a rendered pod would run with.

Shared by the manifest policy tests (tests/unit/test_k8s_manifests.py) and the test that
starts each service with the manifests' own environment.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import IN_CI, ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("embedder", "indexer", "ranker")


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if IN_CI:
            pytest.fail("kubectl is needed to render deploy/k8s in CI", pytrace=False)
        pytest.skip("kubectl not installed: cannot render deploy/k8s")
    return found


@functools.cache
def _render(path: str) -> tuple[dict, ...]:
    out = subprocess.run([kubectl(), "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"kubectl kustomize {path} failed:\n{out.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def render(overlay: str) -> list[dict]:
    """The rendered documents of deploy/k8s/overlays/<overlay> (or 'base')."""
    path = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    return list(_render(str(path)))


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def deployment(docs: list[dict], service: str) -> dict:
    return of_kind(docs, "Deployment")[f"kinship-{service}"]


def container(docs: list[dict], service: str) -> dict:
    (only,) = deployment(docs, service)["spec"]["template"]["spec"]["containers"]
    return only


def container_env(docs: list[dict], service: str) -> dict[str, str | dict]:
    """Every variable the container gets: envFrom ConfigMaps first, then env (which wins).

    A value from a Secret stays as its reference ({'secret': name, 'key': key}): the
    caller decides what stands in for it.
    """
    config_maps = of_kind(docs, "ConfigMap")
    secrets = of_kind(docs, "Secret")
    c = container(docs, service)
    env: dict[str, str | dict] = {}
    for source in c.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        if "configMapKeyRef" in ref:
            env[item["name"]] = config_maps[ref["configMapKeyRef"]["name"]]["data"][ref["configMapKeyRef"]["key"]]
        else:
            key_ref = ref["secretKeyRef"]
            env[item["name"]] = {
                "secret": key_ref["name"],
                "key": key_ref["key"],
                "generated": key_ref["name"] in secrets,
                "optional": key_ref.get("optional", False),
            }
    return env
