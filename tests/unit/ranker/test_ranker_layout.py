"""The ranker's settings and its layering rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import structlog.testing

from kinship.artifacts import ArtifactError, Calibration, write_artifact
from kinship.ranker import bootstrap
from kinship.runtime import config
from kinship.runtime.errors import ConfigError
from tests.kinship_artifact import hand_calibration

DOMAIN = Path(bootstrap.__file__).parent / "domain"
FORBIDDEN_IN_DOMAIN = {"grpc", "google", "kinship.v1", "pymilvus", "onnxruntime"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_imports_no_transport_or_adapter(path):
    bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_DOMAIN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_defaults():
    values = config.resolve(bootstrap.settings(), env={})
    assert (values.port, values.embedder_address, values.indexer_address) == (
        50053,
        "127.0.0.1:50051",
        "127.0.0.1:50052",
    )
    assert (values.candidate_k, values.call_timeout_seconds, values.max_photos) == (100, 30.0, 32)


def test_environment_overrides_and_bad_values_are_all_named():
    env = {"KINSHIP_EMBEDDER_ADDRESS": "dns:///embedder:50051", "KINSHIP_RANKER_CANDIDATE_K": "250"}
    values = config.resolve(bootstrap.settings(), env=env)
    assert (values.embedder_address, values.candidate_k) == ("dns:///embedder:50051", 250)
    bad = {
        "KINSHIP_INDEXER_ADDRESS": "indexer",
        "KINSHIP_RANKER_CANDIDATE_K": "5000",
        "KINSHIP_RANKER_CALL_TIMEOUT_SECONDS": "0",
    }
    with pytest.raises(ConfigError) as caught:
        config.resolve(bootstrap.settings(), env=bad)
    for name in bad:
        assert name in str(caught.value)


def test_scoring_settings_defaults_and_checks(tmp_path):
    values = config.resolve(bootstrap.settings(), {"artifacts_dir": str(tmp_path)}, env={})
    assert (values.prior_probability, values.strong_candidate_log10_lr) == (0.001, 2.0)
    assert values.artifacts_dir == tmp_path
    env = {"KINSHIP_RANKER_PRIOR_PROBABILITY": "0.05", "KINSHIP_ARTIFACTS_DIR": str(tmp_path / "a")}
    values = config.resolve(bootstrap.settings(), {"strong_candidate_log10_lr": "3"}, env=env)
    assert (values.prior_probability, values.strong_candidate_log10_lr) == (0.05, 3.0)
    assert values.artifacts_dir == tmp_path / "a"
    for bad in ("0", "1", "1.5", "-0.1"):
        with pytest.raises(ConfigError, match="KINSHIP_RANKER_PRIOR_PROBABILITY|--prior-probability"):
            config.resolve(bootstrap.settings(), {"prior_probability": bad}, env={})
    with pytest.raises(ConfigError, match="--strong-candidate-log10-lr"):
        config.resolve(bootstrap.settings(), {"strong_candidate_log10_lr": "nan"}, env={})


def write_test_artifact(folder, calibration=None, identity_model_id="ident-1"):
    """An artifact as `kinship train` writes it; the ranker never reads the network, so any bytes do."""
    return write_artifact(
        folder,
        artifact_id="kin-unit",
        identity_model_id=identity_model_id,
        network=b"the ranker does not read the network",
        dimension=4,
        calibration=calibration or hand_calibration(),
        created_at="2026-11-27T00:00:00Z",
        dataset={},
        training={},
        metrics={"auc": 0.81},
        software_version="test",
    )


def test_the_active_artifact_sets_the_scoring(tmp_path):
    flags = {"artifacts_dir": str(tmp_path), "prior_probability": "0.01"}
    shipped = bootstrap.scoring_config(config.resolve(bootstrap.settings(), flags, env={}))
    assert shipped.calibrated and shipped.artifact_shipped  # no ACTIVE file: the artifact shipped in the package
    assert "research use" in shipped.artifact_licence.lower() and "FIW" in shipped.artifact_training_data
    (tmp_path / "ACTIVE").write_text("none\n")
    with structlog.testing.capture_logs() as logs:
        bare = bootstrap.scoring_config(config.resolve(bootstrap.settings(), flags, env={}))
    assert not bare.calibrated and bare.prior_probability == 0.01
    (warning,) = [line for line in logs if line["log_level"] == "warning"]  # the warning at start
    assert "UNCALIBRATED" in warning["event"] and warning["artifacts_dir"] == str(tmp_path)

    artifact = write_test_artifact(tmp_path)
    scoring = bootstrap.scoring_config(config.resolve(bootstrap.settings(), flags, env={}))
    assert scoring.calibrated and scoring.artifact_id == "kin-unit"
    assert (scoring.identity_model_id, scoring.kinship_model_id) == ("ident-1", artifact.kinship_model_id)
    assert scoring.artifact_metrics == {"auc": 0.81} and scoring.prior_probability == 0.01


def test_an_artifact_the_ranker_cannot_use_stops_it(tmp_path):
    cal = hand_calibration()
    no_self = Calibration(cal.calibration_id, cal.method, {k: v for k, v in cal.relations.items() if k != "self"})
    write_test_artifact(tmp_path, calibration=no_self)
    with pytest.raises(ArtifactError, match="no self calibration"):
        bootstrap.scoring_config(config.resolve(bootstrap.settings(), {"artifacts_dir": str(tmp_path)}, env={}))
    (tmp_path / "ACTIVE").write_text("gone\n")
    with pytest.raises(ArtifactError, match="does not exist"):
        bootstrap.scoring_config(config.resolve(bootstrap.settings(), {"artifacts_dir": str(tmp_path)}, env={}))
