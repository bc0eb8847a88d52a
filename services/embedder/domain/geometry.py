"""Pure numpy geometry for detection: letterboxing and non-maximum suppression."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed on a square canvas: scaled by `scale`, padded right and bottom."""

    scale: float
    width: int  # original image size
    height: int

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Maps canvas coordinates (any shape ending in x, y pairs or x1,y1,x2,y2) to original pixels."""
        return points / self.scale

    def clip_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Clips (N, 4) x_min, y_min, x_max, y_max boxes to the original image."""
        out = boxes.copy()
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, self.width)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, self.height)
        return out


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Scales `image` so its longer side is `size` (up or down) and pads it to size x size with zeros."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    canvas[:new_h, :new_w] = resized
    return canvas, Letterbox(scale=scale, width=width, height=height)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one x_min, y_min, x_max, y_max box with each of (N, 4) boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def box_area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def face_size(box: tuple[float, float, float, float]) -> float:
    """A face's size in pixels: the shorter side of its box."""
    return max(0.0, min(box[2] - box[0], box[3] - box[1]))


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A crop resized to size x size (area averaging down, bilinear up); already that size: unchanged."""
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
