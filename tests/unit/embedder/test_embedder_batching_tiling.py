"""Micro-batching, the multi-scale search, per-request filters and the provider check, over fakes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kinship.embedder.adapters.providers import ExecutionProviderError, check_session_providers, resolve_providers
from kinship.embedder.domain.batching import MicroBatcher
from kinship.embedder.domain.pipeline import FaceOptions, FacePipeline
from kinship.embedder.domain.tiling import MultiScale
from tests.unit.embedder.embedder_fakes import CropAligner, FakeDetector, RecordingRecognizer, detection


class SlowRecognizer:
    """Row i of a batch is (first pixel of face i, batch size); each run takes `delay` seconds."""

    dimension = 2

    def __init__(self, delay: float = 0.02):
        self.delay = delay
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def embed_batch(self, faces):
        with self.lock:
            self.sizes.append(len(faces))
        time.sleep(self.delay)
        return np.array([[float(f.reshape(-1)[0]), float(len(faces))] for f in faces], np.float32)

    def embed(self, face):
        return self.embed_batch([face])[0]


def face(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def test_concurrent_callers_share_batches_and_each_gets_its_own_rows():
    recognizer = SlowRecognizer()
    batcher = MicroBatcher(recognizer, max_batch=8, max_wait=0.01)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda v: batcher.embed_batch([face(v), face(v + 100)]), range(16)))
    finally:
        batcher.close()
    for value, rows in enumerate(results):
        assert rows[:, 0].tolist() == [value, value + 100]
    assert max(recognizer.sizes) > 2, "concurrent callers must meet in one run"
    assert max(recognizer.sizes) <= 8, "a batch never exceeds max_batch (whole jobs of 2 faces)"
    assert sum(recognizer.sizes) == 32


def test_a_lone_caller_waits_at_most_the_bound():
    recognizer = SlowRecognizer(delay=0.0)
    batcher = MicroBatcher(recognizer, max_batch=8, max_wait=0.05)
    try:
        started = time.perf_counter()
        batcher.embed_batch([face(1)])
        elapsed = time.perf_counter() - started
    finally:
        batcher.close()
    assert 0.04 <= elapsed < 1.0 and recognizer.sizes == [1]


def test_a_failing_run_fails_every_caller_in_it_and_the_batcher_keeps_serving():
    class Broken(SlowRecognizer):
        def embed_batch(self, faces):
            if any(f.reshape(-1)[0] == 13 for f in faces):
                raise ValueError("bad face")
            return super().embed_batch(faces)

    batcher = MicroBatcher(Broken(delay=0.0), max_batch=1, max_wait=0.0)
    try:
        with pytest.raises(ValueError, match="bad face"):
            batcher.embed_batch([face(13)])
        assert batcher.embed_batch([face(2)])[0, 0] == 2
    finally:
        batcher.close()


def test_pipeline_embeds_all_faces_of_a_photo_in_one_run():
    recognizer = RecordingRecognizer()
    detector = FakeDetector([detection(0.9, x=10), detection(0.8, x=60), detection(0.7, x=110)])
    faces = FacePipeline(detector, CropAligner(), recognizer).run(np.zeros((120, 160, 3), np.uint8))
    assert len(faces) == 3 and recognizer.batches == [3]


def test_request_filters_apply_before_embedding():
    detector = FakeDetector(
        [detection(0.9, x=10, size=20), detection(0.8, x=60, size=50), detection(0.95, x=110, size=30)]
    )
    recognizer = RecordingRecognizer()
    pipeline = FacePipeline(detector, CropAligner(), recognizer)
    image = np.zeros((200, 200, 3), np.uint8)
    assert [f.detection.score for f in pipeline.run(image, options=FaceOptions(min_face_size=25))] == [0.95, 0.8]
    assert [f.detection.score for f in pipeline.run(image, options=FaceOptions(largest_face_only=True))] == [0.8]
    # A flat crop has no sharpness, so its quality is 0: min_quality drops every face before embedding.
    calls = recognizer.calls
    assert pipeline.run(image, options=FaceOptions(min_quality=0.1)) == []
    assert recognizer.calls == calls


class GridDetector:
    """Finds every bright square (value 255) of at least `smallest` px in what it is given, at any size."""

    def __init__(self, smallest: int = 16, input_size: int = 640):
        self.smallest = smallest
        self.input_size = input_size
        self.calls = 0

    def detect(self, image):
        import cv2

        self.calls += 1
        scale = min(1.0, self.input_size / max(image.shape[:2]))
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        mask = (small[:, :, 0] > 200).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        found = []
        for x, y, w, h, _area in stats[1:count]:
            if min(w, h) >= self.smallest:
                found.append(detection(0.9, x=x / scale, y=y / scale, size=w / scale))
        return found


def test_small_faces_in_a_large_photo_are_found_in_tiles_and_merged_once():
    image = np.zeros((3000, 4000, 3), np.uint8)
    spots = [(100, 100), (1900, 1400), (3950 - 32, 2950 - 32), (632, 300)]  # the last one straddles a tile edge
    for x, y in spots:
        image[y : y + 32, x : x + 32] = 255
    image[2000:2400, 500:900] = 255  # a big face: found by the shrunk pass
    detector = GridDetector()
    plain = detector.detect(image)
    assert len(plain) == 1, "the shrunk pass alone misses the 32 px faces"
    found = MultiScale().detect(detector, image, min_face_size=32)
    boxes = sorted((round(d.box[0]), round(d.box[1])) for d in found)
    assert len(found) == 5, boxes
    for x, y in spots:
        assert any(abs(bx - x) <= 3 and abs(by - y) <= 3 for bx, by in boxes), (x, y, boxes)
    # A request for faces of 200 px and up needs no tiles: one detector run.
    detector.calls = 0
    assert len(MultiScale().detect(detector, image, min_face_size=200)) == 1 and detector.calls == 1


def test_tiles_cover_the_image_with_the_overlap():
    plan = MultiScale(input_size=640, overlap=160)
    tiles = plan.tiles(2000, 1500)
    covered = np.zeros((1500, 2000), bool)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 <= 640 and y1 - y0 <= 640
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert plan.tile_scale(1280, 886, 32) is None  # t1.jpg: 32 px faces stay 16 px at 640
    assert plan.tile_scale(4000, 3000, 32) == pytest.approx(0.5)


def test_a_missing_execution_provider_is_a_loud_start_up_error():
    with pytest.raises(ExecutionProviderError, match="CUDAExecutionProvider.*onnxruntime-gpu.*not fall back"):
        resolve_providers("cuda", available=["CPUExecutionProvider"])
    assert resolve_providers("cuda", available=["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == (
        "CUDAExecutionProvider"
    )
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]


def test_onnxruntime_silent_cpu_fallback_is_refused():
    class FellBack:
        def get_providers(self):
            return ["CPUExecutionProvider"]

    with pytest.raises(ExecutionProviderError, match="session runs on CPUExecutionProvider"):
        check_session_providers(FellBack(), ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_idle_runners_share_the_queue_instead_of_one_runner_taking_it_all():
    recognizer = SlowRecognizer(delay=0.05)
    batcher = MicroBatcher(recognizer, max_batch=16, max_wait=0.01, runners=2)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda v: batcher.embed_batch([face(v)]), range(8)))
    finally:
        batcher.close()
    assert [rows[0, 0] for rows in results] == list(range(8))
    assert len(recognizer.sizes) >= 2 and max(recognizer.sizes) < 8, recognizer.sizes


def test_the_embedder_refuses_to_start_on_a_provider_this_onnxruntime_lacks():
    from kinship.embedder import bootstrap
    from kinship.runtime.config import resolve

    values = resolve(bootstrap.settings(), {"execution_provider": "cuda"}, env={})
    available = __import__("onnxruntime").get_available_providers()
    if "CUDAExecutionProvider" in available:
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ExecutionProviderError, match="does not fall back"):
        bootstrap.runtime_options(values)


class FakeGenderAge:
    """insightface's Attribute interface: get(img, face) -> (gender, age), gender 1 = male."""

    def __init__(self):
        self.boxes = []

    def get(self, image, face):
        self.boxes.append(tuple(face.bbox))
        return (1, 37) if face.bbox[0] < 50 else (0, 8)


def test_attribute_model_gives_age_and_sex_per_face_and_reaches_the_proto():
    from kinship.embedder.adapters.insightface_pack import InsightfaceAttributes
    from kinship.embedder.domain.pipeline import EmbeddedFace
    from kinship.embedder.transport import face_to_proto
    from kinship.v1 import common_pb2

    model = FakeGenderAge()
    detector = FakeDetector([detection(0.9, x=10), detection(0.8, x=100)])
    pipeline = FacePipeline(detector, CropAligner(), RecordingRecognizer(), attributes=InsightfaceAttributes(model))
    faces = pipeline.run(np.zeros((200, 200, 3), np.uint8))
    assert [(f.attributes.sex, f.attributes.age) for f in faces] == [("male", 37.0), ("female", 8.0)]
    assert model.boxes[0] == (10.0, 10.0, 50.0, 50.0)
    proto = face_to_proto(faces[0], "m", 8)
    assert proto.attributes.sex == common_pb2.SEX_MALE and proto.attributes.age == 37
    plain = FacePipeline(detector, CropAligner(), RecordingRecognizer()).run(np.zeros((200, 200, 3), np.uint8))
    assert plain[0].attributes is None and not face_to_proto(plain[0], "m", 8).HasField("attributes")
    assert isinstance(plain[0], EmbeddedFace)


def test_each_runner_thread_runs_the_start_hook_before_taking_work():
    started: list[str] = []
    batcher = MicroBatcher(
        RecordingRecognizer(),
        max_batch=4,
        runners=2,
        thread_init=lambda: started.append(threading.current_thread().name),
    )
    try:
        assert batcher.embed(np.zeros((112, 112, 3), np.uint8)).shape == (batcher.dimension,)
    finally:
        batcher.close()
    assert sorted(started) == ["embedder-batch-0", "embedder-batch-1"]
