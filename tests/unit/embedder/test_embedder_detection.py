"""Letterboxing, NMS and YuNet output decoding, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinship.embedder.adapters.yunet import OUTPUT_NAMES, STRIDES, YuNetDetector, decode_outputs
from kinship.embedder.domain.geometry import letterbox, nms
from tests.unit.embedder.embedder_fakes import FakeOnnxSession

SIZE = 640


def test_letterbox_scales_the_longer_side_and_pads_right_and_bottom():
    image = np.full((320, 1280, 3), 200, np.uint8)  # wide: h=320, w=1280
    canvas, placement = letterbox(image, SIZE)
    assert canvas.shape == (SIZE, SIZE, 3)
    assert placement.scale == pytest.approx(0.5)
    assert (canvas[:160] == 200).all() and (canvas[160:] == 0).all()
    # A point at canvas (100, 50) is at (200, 100) in the original.
    assert placement.to_original(np.array([100.0, 50.0])) == pytest.approx([200.0, 100.0])


def test_letterbox_upscales_small_images():
    image = np.full((100, 50, 3), 9, np.uint8)  # tall: h=100, w=50
    canvas, placement = letterbox(image, SIZE)
    assert placement.scale == pytest.approx(6.4)
    assert (canvas[:, :320] == 9).all() and (canvas[:, 320:] == 0).all()


def test_clip_boxes_keeps_boxes_inside_the_image():
    _, placement = letterbox(np.zeros((100, 200, 3), np.uint8), SIZE)
    clipped = placement.clip_boxes(np.array([[-5.0, -1.0, 250.0, 120.0], [10.0, 20.0, 30.0, 40.0]]))
    assert clipped.tolist() == [[0.0, 0.0, 200.0, 100.0], [10.0, 20.0, 30.0, 40.0]]


def test_nms_drops_overlaps_and_keeps_separate_boxes_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], dtype=np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    # With a threshold above every overlap, nothing is dropped.
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]


def blank_outputs() -> dict[str, np.ndarray]:
    outputs = {}
    for stride in STRIDES:
        cells = (SIZE // stride) ** 2
        outputs[f"cls_{stride}"] = np.zeros((1, cells, 1), np.float32)
        outputs[f"obj_{stride}"] = np.zeros((1, cells, 1), np.float32)
        outputs[f"bbox_{stride}"] = np.zeros((1, cells, 4), np.float32)
        outputs[f"kps_{stride}"] = np.zeros((1, cells, 10), np.float32)
    return outputs


def put_face(outputs, stride, row, col, *, cls, obj, bbox, kps=None):
    index = row * (SIZE // stride) + col
    outputs[f"cls_{stride}"][0, index, 0] = cls
    outputs[f"obj_{stride}"][0, index, 0] = obj
    outputs[f"bbox_{stride}"][0, index] = bbox
    if kps is not None:
        outputs[f"kps_{stride}"][0, index] = kps


def test_decode_outputs_follows_opencv_formulas():
    outputs = blank_outputs()
    kps = [0.1, 0.2, 0.9, 0.2, 0.5, 0.5, 0.2, 0.8, 0.8, 0.8]
    put_face(outputs, 32, 5, 7, cls=0.81, obj=1.0, bbox=[0.5, 0.5, math.log(2.0), math.log(2.5)], kps=kps)
    put_face(outputs, 8, 0, 0, cls=0.5, obj=0.5, bbox=[0, 0, 0, 0])  # score 0.5: below the threshold
    boxes, landmarks, scores = decode_outputs(outputs, SIZE, SIZE, 0.6)
    assert scores.tolist() == pytest.approx([0.9])  # sqrt(0.81 * 1.0)
    # centre ((7, 5) + 0.5) * 32 = (240, 176); size (2, 2.5) * 32 = (64, 80)
    assert boxes[0].tolist() == pytest.approx([208.0, 136.0, 272.0, 216.0])
    # landmark k = ((col, row) + kps[2k:2k+2]) * 32
    assert landmarks[0, 0].tolist() == pytest.approx([(7 + 0.1) * 32, (5 + 0.2) * 32])
    assert landmarks[0, 4].tolist() == pytest.approx([(7 + 0.8) * 32, (5 + 0.8) * 32])


def test_decode_outputs_clips_scores_and_handles_no_face():
    outputs = blank_outputs()
    put_face(outputs, 16, 2, 3, cls=1.7, obj=-0.2, bbox=[0, 0, 0, 0])  # clipped to 1 * 0 = 0
    boxes, landmarks, scores = decode_outputs(outputs, SIZE, SIZE, 0.6)
    assert boxes.shape == (0, 4) and landmarks.shape == (0, 5, 2) and scores.shape == (0,)


def test_detector_maps_faces_back_to_the_original_image_and_suppresses_duplicates():
    outputs = blank_outputs()
    put_face(outputs, 32, 5, 7, cls=1.0, obj=0.81, bbox=[0.5, 0.5, math.log(2.0), math.log(2.5)])
    # The same face seen at stride 16 with a lower score: NMS must drop it.
    put_face(outputs, 16, 11, 15, cls=0.7, obj=0.7, bbox=[0.0, 0.0, math.log(4.0), math.log(5.0)])
    # A face at the top-left corner whose box pokes out of the image: clipped.
    put_face(outputs, 32, 0, 0, cls=0.64, obj=1.0, bbox=[0.0, 0.0, math.log(2.0), math.log(2.0)])
    session = FakeOnnxSession(outputs)
    detector = YuNetDetector(session, score_threshold=0.6, nms_iou=0.3)

    image = np.full((640, 1280, 3), 128, np.uint8)  # scaled by 0.5 onto the canvas
    faces = detector.detect(image)

    (feed,) = session.feeds
    blob = feed["input"]
    assert blob.shape == (1, 3, SIZE, SIZE) and blob.dtype == np.float32
    assert (blob[0, :, :320] == 128).all() and (blob[0, :, 320:] == 0).all()
    assert len(faces) == 2
    best, corner = sorted(faces, key=lambda f: -f.score)
    assert best.score == pytest.approx(0.9)
    # canvas box (208, 136, 272, 216) / 0.5
    assert best.box == pytest.approx((416.0, 272.0, 544.0, 432.0))
    assert best.landmarks.shape == (5, 2)
    assert corner.box == pytest.approx((0.0, 0.0, 64.0, 64.0))  # canvas (-32, -32, 32, 32) / 0.5, clipped


def test_output_names_cover_every_stride_and_kind():
    assert len(OUTPUT_NAMES) == 12 and {"cls_8", "obj_16", "bbox_32", "kps_8"} <= set(OUTPUT_NAMES)
