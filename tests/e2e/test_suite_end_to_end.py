"""End to end: `kinship serve all` as real processes, driven through the CLI and gRPC.

The gallery is made of KinFaceW-I children (read from ../shared, never copied into the
repository); the planted relative is one of them, to be found from the photo of their
parent plus a different photo of themself as a child ("self").
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kinship.v1 import common_pb2, ranker_pb2, ranker_pb2_grpc
from tests.conftest import free_ports, sample_image

GALLERY_PAIRS = 30
START_TIMEOUT = 240.0


def as_portrait(crop: np.ndarray, scale: float = 2.0, mirror: bool = False) -> np.ndarray:
    """A KinFaceW 64x64 tight crop made into a photo a detector expects: upscaled, with background around it."""
    face = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    if mirror:
        face = cv2.flip(face, 1)
    pad = face.shape[0] // 2
    return cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def father_son_pairs(kinfacew_dir: Path, count: int) -> list[tuple[Path, Path]]:
    """The first `count` true father-son pairs of the official protocol."""
    with open(kinfacew_dir / "pairs.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["relation"] == "fs" and r["kin"] == "1"]
    images = kinfacew_dir / "images"
    return [(images / r["image1"], images / r["image2"]) for r in rows[:count]]


def kinship_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kinship.cli.main", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _serving(address: str, service: str = "") -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@contextlib.contextmanager
def serve_all(data_dir: Path):
    """`kinship serve all --data-dir DATA_DIR` on free ports until the block ends (then SIGTERM).

    Yields the addresses, an environment whose KINSHIP_*_ADDRESS point at them, the
    data directory, the process and its log; fails the test with the log's tail when
    the suite does not come up within START_TIMEOUT.
    """
    ports = dict(zip(("embedder", "indexer", "ranker"), free_ports(3), strict=True))
    log_path = data_dir / "serve-all.log"
    cmd = [sys.executable, "-m", "kinship.cli.main", "serve", "all", "--data-dir", str(data_dir)]
    cmd += ["--grace-seconds", "3"]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    env = dict(os.environ)
    env.update({f"KINSHIP_{name.upper()}_ADDRESS": address for name, address in addresses.items()})
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_serving(a) for a in addresses.values()):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(30)
                pytest.fail(
                    f"kinship serve all did not come up within {START_TIMEOUT:.0f}s (exit code "
                    f"{process.returncode}); its log:\n{log_path.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        yield {"addresses": addresses, "env": env, "data_dir": data_dir, "process": process, "log": log_path}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


@pytest.fixture(scope="module")
def suite(tmp_path_factory, kinfacew_dir):
    with serve_all(tmp_path_factory.mktemp("data")) as running:
        yield running


def test_every_service_is_serving_and_reflects_its_contract(suite) -> None:
    names = {"embedder": "kinship.v1.Embedder", "indexer": "kinship.v1.Indexer", "ranker": "kinship.v1.KinshipRanker"}
    for name, address in suite["addresses"].items():
        assert _serving(address, names[name]), f"{name} is not SERVING"
        with grpc.insecure_channel(address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            listed = {s.name for r in replies for s in r.list_services_response.service}
        assert names[name] in listed


def test_cli_embeds_a_group_photo_as_json(suite, tmp_path: Path) -> None:
    photo = tmp_path / "group.jpg"
    photo.write_bytes(sample_image("t1.jpg"))
    result = kinship_cli("embed", str(photo), "--json", env=suite["env"])
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert len(reply["faces"]) == 6
    for face in reply["faces"]:
        assert len(face["embedding"]) == reply["dimension"] == face["dimension"]
        assert abs(np.linalg.norm(face["embedding"]) - 1) < 1e-3
        assert len(face["landmarks"]) == 5


@pytest.fixture(scope="module")
def gallery(suite, kinfacew_dir, tmp_path_factory):
    """Enrols the children of GALLERY_PAIRS father-son pairs through `kinship enroll`."""
    folder = tmp_path_factory.mktemp("gallery")
    pairs = father_son_pairs(kinfacew_dir, GALLERY_PAIRS)
    for _parent, child in pairs:
        person = child.stem  # e.g. fs_001_2
        cv2.imwrite(str(folder / f"{person}.jpg"), as_portrait(cv2.imread(str(child))))
    result = kinship_cli(
        "enroll",
        str(folder),
        "--sex",
        "m",
        "--birth-year",
        "1990",
        "--source",
        "kinfacew-i",
        "--json",
        env=suite["env"],
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, f"{result.stderr}\n{report.get('skipped')}"
    assert len(report["enrolled"]) == GALLERY_PAIRS
    return pairs


def test_find_ranks_the_planted_relative_first(suite, gallery, tmp_path: Path) -> None:
    parent, child = gallery[7]
    father = tmp_path / "father.jpg"
    earlier = tmp_path / "child-earlier.jpg"
    cv2.imwrite(str(father), as_portrait(cv2.imread(str(parent))))
    cv2.imwrite(str(earlier), as_portrait(cv2.imread(str(child)), scale=2.5, mirror=True))
    result = kinship_cli(
        "find",
        "--relative",
        f"father={father}",
        "--relative",
        f"self={earlier}",
        "--sex",
        "m",
        "--born-from",
        "1985",
        "--born-to",
        "1995",
        "--top-n",
        "5",
        "--json",
        env=suite["env"],
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    top = reply["candidates"][0]
    assert top["person_id"] == child.stem
    assert top["rank"] == 1
    assert [e["label"] for e in top["evidence"]] == ["father", "self"]
    assert top["evidence"][1]["similarity"] > 0.8, "a mirrored copy of the same face should be very similar"
    assert [c["rank"] for c in reply["candidates"]] == list(range(1, len(reply["candidates"]) + 1))
    scores = [c["score"] for c in reply["candidates"]]
    assert scores == sorted(scores, reverse=True)
    # The human-readable form names the same person first.
    text = kinship_cli(
        "find", "--relative", f"father={father}", "--relative", f"self={earlier}", "--top-n", "3", env=suite["env"]
    )
    assert text.returncode == 0 and f"1. {child.stem}" in text.stdout


def test_typed_filters_reach_the_gallery(suite, gallery, tmp_path: Path) -> None:
    parent, _child = gallery[0]
    father = tmp_path / "father.jpg"
    cv2.imwrite(str(father), as_portrait(cv2.imread(str(parent))))
    result = kinship_cli("find", "--relative", f"father={father}", "--sex", "f", "--json", env=suite["env"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["candidates"] == [], "the gallery holds only males"


def test_parent_photos_alone_rank_true_children_better_than_chance(suite, gallery) -> None:
    # Zero-shot SFace has real but weak kinship signal (AUC ~0.74 on KinFaceW-I), so
    # the true child should on average sit well above the middle of the gallery.
    with grpc.insecure_channel(suite["addresses"]["ranker"]) as channel:
        stub = ranker_pb2_grpc.KinshipRankerStub(channel)
        ranks = []
        for parent, child in gallery:
            ok, buf = cv2.imencode(".jpg", as_portrait(cv2.imread(str(parent))))
            relative = ranker_pb2.Relative(
                relation=common_pb2.RELATION_FATHER, photos=[ranker_pb2.Photo(image=buf.tobytes())]
            )
            reply = stub.FindRelatives(
                ranker_pb2.FindRelativesRequest(relatives=[relative], top_n=GALLERY_PAIRS), timeout=60
            )
            order = [c.person_id for c in reply.candidates]
            ranks.append(order.index(child.stem) + 1)
    chance = (GALLERY_PAIRS + 1) / 2
    print(f"father-only queries: mean rank of the true son {np.mean(ranks):.1f} of {GALLERY_PAIRS} (chance {chance})")
    assert np.mean(ranks) < chance - 2, f"mean rank {np.mean(ranks):.1f} is no better than chance {chance}"


def test_bad_requests_get_clear_errors_and_the_suite_keeps_serving(suite, tmp_path: Path) -> None:
    with grpc.insecure_channel(suite["addresses"]["ranker"]) as channel:
        stub = ranker_pb2_grpc.KinshipRankerStub(channel)
        with pytest.raises(grpc.RpcError) as empty:
            stub.FindRelatives(ranker_pb2.FindRelativesRequest(), timeout=30)
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "relative" in empty.value.details()
        broken = ranker_pb2.Relative(
            relation=common_pb2.RELATION_MOTHER, photos=[ranker_pb2.Photo(image=b"\xff\xd8\xffnot really a jpeg")]
        )
        with pytest.raises(grpc.RpcError) as malformed:
            stub.FindRelatives(ranker_pb2.FindRelativesRequest(relatives=[broken]), timeout=30)
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "photos[0]" in malformed.value.details()
        good = ranker_pb2.Relative(
            relation=common_pb2.RELATION_SELF, photos=[ranker_pb2.Photo(image=sample_image("Tom_Hanks_54745.png"))]
        )
        with pytest.raises(grpc.RpcError) as unknown:
            stub.FindRelatives(ranker_pb2.FindRelativesRequest(relatives=[good], model_id="no-such-model"), timeout=30)
        # Calibrated (the shipped artifact): the gallery's vectors belong to one model, so another is refused.
        assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no-such-model" in unknown.value.details()
    photo = tmp_path / "garbage.png"
    photo.write_bytes(b"definitely not an image")
    result = kinship_cli("embed", str(photo), env=suite["env"])
    assert result.returncode == 1 and "INVALID_ARGUMENT" in result.stderr
    assert all(_serving(a) for a in suite["addresses"].values())


def test_sigterm_stops_every_service(suite) -> None:
    # Runs last in this module (pytest keeps file order): the suite goes down here.
    process = suite["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert not any(_serving(a) for a in suite["addresses"].values())
    assert "kinship: stopped" in suite["log"].read_text()
