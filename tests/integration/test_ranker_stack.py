"""The ranker against the real embedder (model pack, onnxruntime) and the real indexer
(Milvus Lite in tmp_path), each its own gRPC server on an ephemeral port.

The gallery is the six faces of insightface's t1.jpg group photo plus a portrait;
the question is a crop of one face of the group, sent as an earlier photo (`self`):
the planted person must come first, and a relative's own person id never comes back.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import grpc
import numpy as np
import pytest

from kinship.embedder import bootstrap as embedder_bootstrap
from kinship.indexer import bootstrap as indexer_bootstrap
from kinship.ranker import bootstrap as ranker_bootstrap
from kinship.runtime import config
from kinship.runtime.server import ServerThread
from kinship.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    indexer_pb2,
    indexer_pb2_grpc,
    ranker_pb2,
    ranker_pb2_grpc,
)


def resolved(settings, **flags) -> SimpleNamespace:
    return config.resolve(settings, {"port": "0", **flags}, env={})


def crop(image: bytes, box: common_pb2.BoundingBox, margin: float = 0.6) -> bytes:
    """The face in `box` with a margin around it, as JPEG: a different photo of the same face."""
    pixels = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    w, h = box.x_max - box.x_min, box.y_max - box.y_min
    x0, y0 = int(max(0, box.x_min - margin * w)), int(max(0, box.y_min - margin * h))
    x1, y1 = int(min(pixels.shape[1], box.x_max + margin * w)), int(min(pixels.shape[0], box.y_max + margin * h))
    ok, encoded = cv2.imencode(".jpg", pixels[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, group_photo, portrait_photo):
    data_dir = tmp_path_factory.mktemp("ranker-stack")
    with (
        ServerThread(embedder_bootstrap.build, resolved(embedder_bootstrap.settings())) as embedder,
        ServerThread(
            indexer_bootstrap.build, resolved(indexer_bootstrap.settings(), data_dir=str(data_dir))
        ) as indexer,
    ):
        with (
            grpc.insecure_channel(embedder.address) as emb_channel,
            grpc.insecure_channel(indexer.address) as idx_channel,
        ):
            embed = embedder_pb2_grpc.EmbedderStub(emb_channel).Embed
            group = embed(embedder_pb2.EmbedRequest(image=group_photo), timeout=60)
            portrait = embed(embedder_pb2.EmbedRequest(image=portrait_photo), timeout=60)
            assert len(group.faces) == 6 and len(portrait.faces) == 1
            records = [
                indexer_pb2.GalleryRecord(
                    record_id=f"group-{k}:t1",
                    person_id=f"group-{k}",
                    embedding=face.embedding,
                    attributes=common_pb2.PersonAttributes(
                        birth_year=1980 + k, sex=common_pb2.SEX_MALE, source="t1.jpg"
                    ),
                )
                for k, face in enumerate(group.faces)
            ]
            records.append(
                indexer_pb2.GalleryRecord(
                    record_id="portrait:1",
                    person_id="portrait",
                    embedding=portrait.faces[0].embedding,
                    attributes=common_pb2.PersonAttributes(birth_year=1956, sex=common_pb2.SEX_MALE),
                )
            )
            indexer_pb2_grpc.IndexerStub(idx_channel).Upsert(
                indexer_pb2.UpsertRequest(model_id=group.model_id, records=records), timeout=60
            )
        settings = resolved(
            ranker_bootstrap.settings(), embedder_address=embedder.address, indexer_address=indexer.address
        )
        with ServerThread(ranker_bootstrap.build, settings) as ranker, grpc.insecure_channel(ranker.address) as channel:
            yield SimpleNamespace(
                stub=ranker_pb2_grpc.KinshipRankerStub(channel),
                model_id=group.model_id,
                crops=[crop(group_photo, face.box) for face in group.faces],
            )


def self_photo(image: bytes, **kwargs) -> ranker_pb2.Relative:
    return ranker_pb2.Relative(relation=common_pb2.RELATION_SELF, photos=[ranker_pb2.Photo(image=image)], **kwargs)


@pytest.mark.parametrize("planted", range(6))
def test_a_crop_of_a_face_finds_that_person_first(stack, planted):
    reply = stack.stub.FindRelatives(
        ranker_pb2.FindRelativesRequest(relatives=[self_photo(stack.crops[planted])], top_n=3), timeout=120
    )
    assert reply.model_id == stack.model_id
    assert reply.candidates_considered == 7
    first = reply.candidates[0]
    assert first.person_id == f"group-{planted}"
    assert first.attributes.birth_year == 1980 + planted
    evidence = first.evidence[0]
    assert (evidence.label, evidence.record_id, evidence.retrieved) == ("self", f"group-{planted}:t1", True)
    # Same face, another crop: clearly more alike than anyone else (measured: 0.51-0.97
    # for the planted face, at most 0.35 for the runner-up; the two smallest faces are the weakest).
    assert evidence.similarity > 0.45
    assert first.score - reply.candidates[1].score > 0.2


def test_relatives_are_excluded_and_filters_apply(stack):
    reply = stack.stub.FindRelatives(
        ranker_pb2.FindRelativesRequest(
            relatives=[
                self_photo(stack.crops[1], person_id="group-1"),
                ranker_pb2.Relative(
                    relation=common_pb2.RELATION_SIBLING, photos=[ranker_pb2.Photo(image=stack.crops[2])]
                ),
            ],
            missing_person=ranker_pb2.MissingPerson(birth_year=common_pb2.BirthYearRange(min=1980, max=1990)),
            top_n=10,
        ),
        timeout=120,
    )
    people = [c.person_id for c in reply.candidates]
    assert "group-1" not in people and "portrait" not in people  # excluded; born 1956
    assert sorted(people) == ["group-0", "group-2", "group-3", "group-4", "group-5"]
    assert [e.label for e in reply.candidates[0].evidence] == ["self", "sibling"]
    assert [c.rank for c in reply.candidates] == [1, 2, 3, 4, 5]
    scores = [c.score for c in reply.candidates]
    assert scores == sorted(scores, reverse=True)


def test_the_embedder_refusing_a_photo_reaches_the_caller(stack):
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.FindRelatives(
            ranker_pb2.FindRelativesRequest(relatives=[self_photo(stack.crops[0]), self_photo(b"not an image")]),
            timeout=120,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("relatives[1].photos[0]: the photo of 'self-2' was refused")
