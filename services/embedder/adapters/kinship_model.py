"""The kinship network of the active trained artifact, served beside the identity model it is bound to.

`kinship train` writes the network as ONNX (see kinship.artifacts and
kinship.training.network): input `data` [N, 3, 112, 112], an aligned face, RGB,
float32 0..255 (what SFace takes); output `embedding` [N, d], L2-normalised. It is
bound to one identity model id and reuses that model's detector and alignment, so
here it becomes a second `ServedModel` whose pipeline shares the identity pack's
detector and aligner: the same detection gives the same crop to both networks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kinship.artifacts import NETWORK_INPUT, NETWORK_OUTPUT, ArtifactError, KinshipArtifact
from kinship.embedder.adapters.model_pack import LoadedPack
from kinship.embedder.adapters.onnx_models import OnnxSession, create_session
from kinship.embedder.adapters.sface import FACE_SIZE, SFaceRecognizer
from kinship.embedder.domain.pipeline import l2_normalise
from kinship.embedder.domain.service import ModelInfo, ModelKind, ServedModel
from kinship.runtime.logs import get_logger

log = get_logger("kinship.embedder.kinship_model")


def kinship_recognizer(session: OnnxSession, *, dimension: int) -> SFaceRecognizer:
    """The kinship network takes the identity model's input (see kinship.artifacts), so the identity
    model's adapter runs it; only its tensor names differ."""
    return SFaceRecognizer(session, dimension=dimension, input_name=NETWORK_INPUT, output_name=NETWORK_OUTPUT)


@dataclass
class LoadedKinshipModel:
    """The artifact's network, loaded and self-tested, as a served model."""

    artifact: KinshipArtifact
    model: ServedModel
    recognizer: SFaceRecognizer
    load_seconds: float


def check_binding(artifact: KinshipArtifact, identity_model_id: str) -> None:
    """ArtifactError unless the artifact was trained on `identity_model_id` (the model this embedder serves)."""
    if artifact.identity_model_id != identity_model_id:
        raise ArtifactError(
            f"the active kinship artifact {artifact.artifact_id} (in {artifact.path}) is bound to the identity "
            f"model {artifact.identity_model_id!r}, but this embedder serves {identity_model_id!r}: its network "
            "expects another model's faces. Train an artifact for this model (kinship train), activate one that "
            f"is bound to it (the ACTIVE file in {artifact.path.parent}), or remove ACTIVE to serve the identity "
            "model only"
        )


def load_kinship_model(artifact: KinshipArtifact, pack: LoadedPack, *, intra_op_threads: int = 1) -> LoadedKinshipModel:
    """Checks the binding and the network's sha256, loads it on onnxruntime and runs it once.

    Raises ArtifactError (a ConfigError: the embedder refuses to start) when any step fails.
    """
    started = time.perf_counter()
    check_binding(artifact, pack.model_id)
    network = artifact.network_bytes()  # ArtifactError when the file is missing or altered
    try:
        session = create_session(network, intra_op_threads=intra_op_threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ArtifactError(
            f"onnxruntime cannot load the network of kinship artifact {artifact.artifact_id} "
            f"({artifact.path / artifact.network_file}): {exc}; train again (kinship train)"
        ) from exc
    recognizer = kinship_recognizer(session, dimension=artifact.dimension)
    self_test(artifact, recognizer)
    info = ModelInfo(
        model_id=artifact.kinship_model_id,
        dimension=artifact.dimension,
        detector=pack.model.info.detector,
        recognizer=artifact.network_file,
        kind=ModelKind.KINSHIP,
        artifact_id=artifact.artifact_id,
        bound_model_id=artifact.identity_model_id,
    )
    model = ServedModel(info=info, pipeline=pack.model.pipeline.with_recognizer(recognizer))
    seconds = time.perf_counter() - started
    log.info(
        "kinship model loaded",
        model_id=info.model_id,
        artifact_id=artifact.artifact_id,
        calibration_id=artifact.calibration.calibration_id,
        dimension=info.dimension,
        seconds=round(seconds, 3),
    )
    return LoadedKinshipModel(artifact=artifact, model=model, recognizer=recognizer, load_seconds=seconds)


def self_test(artifact: KinshipArtifact, recognizer: SFaceRecognizer) -> None:
    """Runs the network once on a grey face: it must give a finite vector of the manifest's dimension."""
    grey = np.full((FACE_SIZE, FACE_SIZE, 3), 128, np.uint8)
    try:
        raw = recognizer.embed(grey)
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the network is not usable
        raise ArtifactError(
            f"the network of kinship artifact {artifact.artifact_id} failed its self-test run: {exc}; "
            "train again (kinship train)"
        ) from exc
    if raw.shape != (artifact.dimension,):
        raise ArtifactError(
            f"the network of kinship artifact {artifact.artifact_id} gives {raw.size} values, its manifest "
            f"says {artifact.dimension}: the artifact is inconsistent, train again (kinship train)"
        )
    try:
        l2_normalise(raw)
    except ValueError as exc:
        raise ArtifactError(
            f"the network of kinship artifact {artifact.artifact_id} gives an unusable vector on a test face "
            f"({exc}); train again (kinship train)"
        ) from exc
