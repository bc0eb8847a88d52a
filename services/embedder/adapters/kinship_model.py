"""The kinship model of the active artifact, served beside (or inside) the identity model it is bound to.

A format 2 artifact (what `kinship train` writes now, and the shipped one) holds a
head over the identity model's feature map (kinship.kinship_head). It is grafted onto
the identity graph: one session, one run of the trunk per face, two outputs. The
identity and kinship models the embedder serves are then column views of that one
joint recognizer (`ColumnView`), so a request that asks for both runs the trunk once,
and the identity vectors are bit for bit those of the identity graph alone (checked at
load).

A format 1 artifact: `kinship train` wrote the network as ONNX (see kinship.artifacts and
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

from kinship.artifacts import NETWORK_INPUT, NETWORK_KIND_HEAD, NETWORK_OUTPUT, ArtifactError, KinshipArtifact
from kinship.embedder.adapters.model_pack import DEFAULT_PACK, LoadedPack, recognizer_bytes
from kinship.embedder.adapters.onnx_models import OnnxSession, create_session
from kinship.embedder.adapters.sface import FACE_SIZE, SFaceRecognizer, faces_blob
from kinship.embedder.domain.pipeline import ColumnView, l2_normalise
from kinship.embedder.domain.service import ModelInfo, ModelKind, ServedModel
from kinship.kinship_head import HEAD_OUTPUT, IDENTITY_FEATURE_MAP, IDENTITY_OUTPUT, HeadError, compose
from kinship.runtime.logs import get_logger

log = get_logger("kinship.embedder.kinship_model")


def kinship_recognizer(session: OnnxSession, *, dimension: int) -> SFaceRecognizer:
    """The kinship network takes the identity model's input (see kinship.artifacts), so the identity
    model's adapter runs it; only its tensor names differ."""
    return SFaceRecognizer(session, dimension=dimension, input_name=NETWORK_INPUT, output_name=NETWORK_OUTPUT)


class JointRecognizer:
    """The identity graph with the kinship head grafted on: one run -> [identity | kinship] per face.

    `dimension` is the two widths together; `identity_columns` and `kinship_columns`
    say where each is (see ColumnView). Input as SFace: RGB float32 0..255, NCHW.
    """

    def __init__(self, session: OnnxSession, *, identity_dimension: int, kinship_dimension: int):
        self._session = session
        self.identity_columns = (0, identity_dimension)
        self.kinship_columns = (identity_dimension, identity_dimension + kinship_dimension)
        self.dimension = identity_dimension + kinship_dimension

    def run_blob(self, blob: np.ndarray) -> np.ndarray:
        identity, kinship = self._session.run([IDENTITY_OUTPUT, HEAD_OUTPUT], {NETWORK_INPUT: blob})
        return np.concatenate([np.asarray(identity, np.float32), np.asarray(kinship, np.float32)], axis=1)

    def embed_batch(self, faces_bgr) -> np.ndarray:
        if not faces_bgr:
            return np.zeros((0, self.dimension), np.float32)
        return self.run_blob(faces_blob(faces_bgr))

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        return self.embed_batch([aligned_bgr])[0]


def joint_network(artifact: KinshipArtifact, identity: bytes) -> bytes:
    """The identity graph (prepared, dynamic batch) with the artifact's head grafted on; ArtifactError if it does not fit."""
    inputs = dict(artifact.head_inputs)
    try:
        return compose(
            identity,
            artifact.network_bytes(),
            feature_map=inputs.pop("feature_map", IDENTITY_FEATURE_MAP),
            identity_output=inputs.pop("identity", IDENTITY_OUTPUT),
            borrowed=inputs,  # the rest: weights of the identity graph the head reuses
        )
    except (HeadError, ValueError) as exc:
        raise ArtifactError(
            f"the head of kinship artifact {artifact.artifact_id} does not fit the identity model "
            f"{artifact.identity_model_id}: {exc}; use an artifact trained for this model"
        ) from exc


@dataclass
class LoadedKinshipModel:
    """The artifact's network, loaded and self-tested, as a served model.

    For a head artifact `joint` is the one recognizer behind both `identity_recognizer`
    and `recognizer` (column views of it); for a format 1 network it is None and
    `recognizer` runs the whole kinship network by itself.
    """

    artifact: KinshipArtifact
    model: ServedModel
    recognizer: SFaceRecognizer | ColumnView
    load_seconds: float
    joint: JointRecognizer | None = None
    identity_recognizer: ColumnView | None = None


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
    if artifact.network_kind == NETWORK_KIND_HEAD:
        return _load_head(artifact, pack, intra_op_threads=intra_op_threads, started=started)
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


def _load_head(
    artifact: KinshipArtifact, pack: LoadedPack, *, intra_op_threads: int, started: float
) -> LoadedKinshipModel:
    if pack.spec is None or pack.spec.model_id != DEFAULT_PACK.model_id:
        raise ArtifactError(f"kinship artifact {artifact.artifact_id}: a head is grafted onto the default pack only")
    network = joint_network(artifact, recognizer_bytes(pack.spec, dynamic_batch=True))
    try:
        session = create_session(network, intra_op_threads=intra_op_threads, providers=pack_providers(pack))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ArtifactError(
            f"onnxruntime cannot load the head of kinship artifact {artifact.artifact_id} grafted onto "
            f"{artifact.identity_model_id}: {exc}"
        ) from exc
    joint = JointRecognizer(session, identity_dimension=pack.model.info.dimension, kinship_dimension=artifact.dimension)
    identity_view = ColumnView(joint, *joint.identity_columns)
    kinship_view = ColumnView(joint, *joint.kinship_columns)
    self_test(artifact, kinship_view)
    _same_identity(artifact, pack, identity_view)
    info = ModelInfo(
        model_id=artifact.kinship_model_id,
        dimension=artifact.dimension,
        detector=pack.model.info.detector,
        recognizer=f"{pack.model.info.recognizer} + {artifact.network_file}",
        kind=ModelKind.KINSHIP,
        artifact_id=artifact.artifact_id,
        bound_model_id=artifact.identity_model_id,
    )
    model = ServedModel(info=info, pipeline=pack.model.pipeline.with_recognizer(kinship_view))
    seconds = time.perf_counter() - started
    log.info(
        "kinship head loaded onto the identity graph (one trunk run per face)",
        model_id=info.model_id,
        artifact_id=artifact.artifact_id,
        calibration_id=artifact.calibration.calibration_id,
        shipped=artifact.shipped,
        seconds=round(seconds, 3),
    )
    return LoadedKinshipModel(
        artifact=artifact,
        model=model,
        recognizer=kinship_view,
        load_seconds=seconds,
        joint=joint,
        identity_recognizer=identity_view,
    )


def pack_providers(pack: LoadedPack) -> list[str] | None:
    """The execution providers the pack's recognizer session runs on (the joint session must match)."""
    session = getattr(pack.recognizer, "_session", None)
    try:
        return list(session.get_providers()) if session is not None else None
    except AttributeError:
        return None


def _same_identity(artifact: KinshipArtifact, pack: LoadedPack, view: ColumnView) -> None:
    """The joint graph's identity output must be the identity model's own, on a test face."""
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    expected = np.asarray(pack.recognizer.embed(face), np.float32)
    got = view.embed(face)
    if expected.shape != got.shape or not np.allclose(
        expected, got, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max())
    ):
        raise ArtifactError(
            f"kinship artifact {artifact.artifact_id}: with its head grafted on, the identity output differs from "
            "the identity model's own; the composition is broken (report it), or remove ACTIVE's artifact"
        )


def self_test(artifact: KinshipArtifact, recognizer) -> None:
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
