"""Artifact folders: format 2 (a head) beside format 1, what ACTIVE means, and naming an artifact to measure."""

from __future__ import annotations

import json

import pytest

from kinship import artifacts
from kinship.artifacts import ArtifactError, load_active, resolve_artifact, write_artifact
from tests.kinship_artifact import hand_calibration


def write(folder, artifact_id="kin-a", **extra):
    return write_artifact(
        folder,
        artifact_id=artifact_id,
        identity_model_id="ident-1",
        network=b"head bytes",
        dimension=128,
        calibration=hand_calibration(),
        created_at="2026-12-07T00:00:00Z",
        dataset={"name": "hand-made"},
        training={"thresholds": {"father": 0.1}},
        metrics={"auc": 0.9},
        software_version="test",
        **extra,
    )


def test_a_head_artifact_says_what_it_reads_and_its_licence(tmp_path):
    artifact = write(
        tmp_path,
        network_kind=artifacts.NETWORK_KIND_HEAD,
        head_inputs={"feature_map": "bn1", "identity": "fc1"},
        licence="research use only",
    )
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    assert manifest["format"] == "kinship-artifact/2" and manifest["network"]["file"] == "head.onnx"
    assert manifest["network"]["inputs"] == {"feature_map": "bn1", "identity": "fc1"}
    assert artifact.network_kind == "head" and artifact.head_inputs["feature_map"] == "bn1"
    assert artifact.licence == "research use only" and artifact.network_bytes() == b"head bytes"
    assert not artifact.shipped and artifact.format == "kinship-artifact/2"


def test_a_format_1_artifact_still_loads_as_a_whole_network(tmp_path):
    artifact = write(tmp_path)
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    assert manifest["format"] == "kinship-artifact/1" and manifest["network"]["file"] == "kinship.onnx"
    assert artifact.network_kind == "network" and artifact.licence == ""


def test_an_unknown_format_is_refused_with_what_this_version_reads(tmp_path):
    artifact = write(tmp_path)
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    manifest["format"] = "kinship-artifact/9"
    (artifact.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="kinship-artifact/1.*kinship-artifact/2"):
        load_active(tmp_path)


def test_without_active_the_shipped_artifact_is_served_and_none_serves_nothing(tmp_path):
    shipped = load_active(tmp_path)  # no ACTIVE file at all
    assert shipped is not None and shipped.shipped and shipped.network_kind == "head"
    assert "research use" in shipped.licence.lower()
    artifacts.activate_artifact(tmp_path, artifacts.NO_ARTIFACT)
    assert load_active(tmp_path) is None
    mine = write(tmp_path)  # training activates what it writes, over "none"
    assert load_active(tmp_path).artifact_id == mine.artifact_id


def test_an_artifact_is_named_by_default_by_id_or_by_path(tmp_path):
    mine = write(tmp_path / "artifacts", activate=False)
    assert resolve_artifact("default", tmp_path / "artifacts").shipped
    assert resolve_artifact("kin-a", tmp_path / "artifacts").artifact_id == "kin-a"
    assert resolve_artifact(str(mine.path), tmp_path / "elsewhere").artifact_id == "kin-a"
    with pytest.raises(ArtifactError, match="no artifact 'kin-missing'.*'default'"):
        resolve_artifact("kin-missing", tmp_path / "artifacts")
