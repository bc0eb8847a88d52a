"""The Milvus that deploy/k8s deploys is the Milvus that the integration suite runs.

Every Milvus the manifests make (the operator's `Milvus` resources, rendered with
`kubectl kustomize`, and the Helm values) runs the image `server_version.DEPLOYED_IMAGE`;
that image's version is the `milvus==X` pin of the test extra (the server the integration
tests start) and lies in the range the indexer accepts (docs/deploy.md, "Supported Milvus").
"""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from kinship.indexer.domain import server_version
from tests.conftest import ROOT
from tests.manifests import K8S, OVERLAYS, of_kind, render

HELM_VALUES = sorted((K8S / "milvus" / "helm").glob("values-*.yaml"))


def pinned_server_version() -> str:
    """The version of the `milvus` package the test extra pins (its `milvus-server` is the tested server)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [p for p in extras["test"] if re.fullmatch(r"milvus==[\d.]+", p)]
    return pin.split("==")[1]


def deployed_version() -> str:
    return server_version.DEPLOYED_IMAGE.rsplit(":", 1)[1]


def test_the_deployed_image_is_the_tested_server_and_in_the_supported_range():
    assert deployed_version() == f"v{pinned_server_version()}"
    assert server_version.refusal(deployed_version(), "the deployed Milvus") is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_milvus_resource_runs_the_tested_image(overlay):
    # dev brings deploy/k8s/milvus/standalone, prod deploy/k8s/milvus/cluster.
    milvus = of_kind(render(overlay), "Milvus")
    assert milvus, f"{overlay} makes no Milvus"
    for name, doc in milvus.items():
        assert doc["spec"]["components"]["image"] == server_version.DEPLOYED_IMAGE, f"{overlay}: Milvus/{name}"


@pytest.mark.parametrize("values", HELM_VALUES, ids=lambda p: p.name)
def test_the_helm_values_run_the_tested_image(values):
    image = yaml.safe_load(values.read_text())["image"]["all"]
    assert f"{image['repository']}:{image['tag']}" == server_version.DEPLOYED_IMAGE
    # Chart 4.2.0 and later no longer deploy Milvus 2.3: the install command pins a 4.1 chart.
    assert re.search(r"helm install .* --version 4\.1\.\d+ ", values.read_text()), values.name
