"""A real kinship artifact for tests, made without training.

The network is the real one `kinship train` builds (the default pack's SFace trunk,
mirrored views, standardisation, projection, L2 norm) with a projection drawn at
random instead of learned, so its vectors are real ONNX outputs of the right shape;
the calibration is written by hand with plausible slopes. It tests loading, serving,
storing and fusing; it says nothing about accuracy (that is `kinship eval`'s job).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kinship.artifacts import Calibration, KinshipArtifact, RelationCalibration, write_artifact

IDENTITY_MODEL_ID = "sface-2021dec-int8bq@yunet-2023mar"
CALIBRATION_NAMES = (
    "father",
    "father-son",
    "father-daughter",
    "mother",
    "mother-son",
    "mother-daughter",
    "sibling",
)


def hand_calibration(calibration_id: str = "cal-test") -> Calibration:
    relations = {
        name: RelationCalibration(
            name=name,
            model="kinship",
            slope=8.0,
            intercept=-2.0,
            max_abs_log10_lr=2.5,
            fitted_on="hand-written for tests" if name != "sibling" else "borrowed from parent-child (test)",
            kin_pairs=100,
            non_kin_pairs=100,
        )
        for name in CALIBRATION_NAMES
    }
    relations["self"] = RelationCalibration(
        name="self",
        model="identity",
        slope=12.0,
        intercept=-4.0,
        max_abs_log10_lr=3.0,
        fitted_on="hand-written for tests",
        kin_pairs=100,
        non_kin_pairs=100,
    )
    return Calibration(calibration_id=calibration_id, method="linear logistic (test)", relations=relations)


def make_test_artifact(
    artifacts_dir: Path,
    *,
    artifact_id: str = "kin-test-0001",
    dimension: int = 64,
    seed: int = 0,
    identity_model_id: str = IDENTITY_MODEL_ID,
) -> KinshipArtifact:
    """Writes and activates an artifact with the real network and a random projection."""
    from kinship.embedder.adapters.model_pack import recognizer_bytes
    from kinship.training.network import FEATURES, fold_constants, kinship_network

    rng = np.random.default_rng(seed)
    identity = fold_constants(recognizer_bytes())
    network = kinship_network(
        identity,
        mean=np.zeros(FEATURES, np.float32),
        inv_scale=np.ones(FEATURES, np.float32),
        projection=rng.normal(size=(FEATURES, dimension)).astype(np.float32),
    )
    return write_artifact(
        artifacts_dir,
        artifact_id=artifact_id,
        identity_model_id=identity_model_id,
        network=network,
        dimension=dimension,
        calibration=hand_calibration(),
        created_at="2026-11-27T00:00:00Z",
        dataset={"name": "none (test artifact)"},
        training={"method": "random projection (test artifact)"},
        metrics={},
        software_version="test",
    )


def no_artifact(folder: Path) -> Path:
    """An artifacts folder whose ACTIVE says `none`: the suite serves no kinship model (uncalibrated).

    (An empty folder is no longer uncalibrated: without ACTIVE the shipped artifact is served.)
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ACTIVE").write_text("none\n")
    return folder
