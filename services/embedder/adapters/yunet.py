"""YuNet face detector (OpenCV Zoo, 2023mar) on onnxruntime.

The model takes one BGR float32 image 0..255, NCHW, fixed 640x640, no
normalisation, and gives, for strides 8, 16 and 32, per grid cell: class and
objectness scores, a box (centre offset and log size) and 5 keypoint offsets.
Decoding follows OpenCV's `cv2.FaceDetectorYN`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kinship.embedder.adapters.onnx_models import OnnxSession
from kinship.embedder.domain.geometry import letterbox, nms
from kinship.embedder.domain.pipeline import Detection

STRIDES = (8, 16, 32)
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES)
# OpenCV's default of 0.9 misses small and profile faces; 0.6 finds the 6 faces of
# insightface's t1.jpg with margin and still rejects background.
DEFAULT_SCORE_THRESHOLD = 0.6
DEFAULT_NMS_IOU = 0.3
# Candidates kept before NMS (as OpenCV's top_k), so a pathological image stays cheap.
MAX_CANDIDATES = 5000


def decode_outputs(
    outputs: Mapping[str, np.ndarray], input_width: int, input_height: int, score_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turns raw YuNet outputs into (boxes (N, 4) x_min,y_min,x_max,y_max; landmarks (N, 5, 2); scores (N,)).

    Coordinates are in pixels of the network input. For stride s and cell
    (row, col): score = sqrt(cls * obj); centre = ((col, row) + bbox[:2]) * s;
    size = exp(bbox[2:]) * s; landmark k = ((col, row) + kps[2k:2k+2]) * s.
    """
    boxes, landmarks, scores = [], [], []
    for stride in STRIDES:
        cols = input_width // stride
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.flatnonzero(score >= score_threshold)
        if keep.size == 0:
            continue
        row, col = np.divmod(keep, cols)
        col = col.astype(np.float32)
        row = row.astype(np.float32)
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
        cx = (col + bbox[:, 0]) * stride
        cy = (row + bbox[:, 1]) * stride
        w = np.exp(bbox[:, 2]) * stride
        h = np.exp(bbox[:, 3]) * stride
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
        kx = (kps[:, :, 0] + col[:, None]) * stride
        ky = (kps[:, :, 1] + row[:, None]) * stride
        landmarks.append(np.stack([kx, ky], axis=2))
        scores.append(score[keep])
    if not scores:
        return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32)
    return np.concatenate(boxes), np.concatenate(landmarks), np.concatenate(scores)


class YuNetDetector:
    """FaceDetector over a YuNet session with a fixed square input."""

    def __init__(
        self,
        session: OnnxSession,
        *,
        input_name: str = "input",
        input_size: int = 640,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = DEFAULT_NMS_IOU,
    ):
        self._session = session
        self._input_name = input_name
        self._size = input_size
        self._score_threshold = score_threshold
        self._nms_iou = nms_iou

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        canvas, placement = letterbox(image_bgr, self._size)
        blob = canvas.transpose(2, 0, 1)[np.newaxis].astype(np.float32)
        raw = self._session.run(list(OUTPUT_NAMES), {self._input_name: blob})
        outputs = dict(zip(OUTPUT_NAMES, raw, strict=True))
        boxes, landmarks, scores = decode_outputs(outputs, self._size, self._size, self._score_threshold)
        if scores.size > MAX_CANDIDATES:
            top = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
            boxes, landmarks, scores = boxes[top], landmarks[top], scores[top]
        keep = nms(boxes, scores, self._nms_iou)
        boxes = placement.clip_boxes(placement.to_original(boxes[keep]))
        landmarks = placement.to_original(landmarks[keep])
        return [
            Detection(box=tuple(float(v) for v in box), landmarks=points.astype(np.float32), score=float(score))
            for box, points, score in zip(boxes, landmarks, scores[keep], strict=True)
        ]
