"""Finding small faces in large photos: one shrunk pass for the big faces, overlapping tiles for the small.

A detector sees a fixed square (640 px): a 4000x3000 photo shrunk to it turns a 32 px
face into 5 px, below what any detector finds. When the smallest face asked for would
shrink below `smallest_detectable` pixels, the photo is also scaled so that such a
face becomes `smallest_detectable` pixels (never enlarged) and cut into overlapping
tiles of the detector's size. A tile keeps only the faces that lie wholly inside it
(away from the edges it shares with its neighbours); the overlap is large enough that
every face up to `overlap` pixels lies wholly inside some tile, and bigger faces come
from the shrunk pass. Duplicates meet in one non-maximum suppression.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from kinship.embedder.domain.geometry import nms

if TYPE_CHECKING:
    from kinship.embedder.domain.pipeline import Detection, FaceDetector

#: Pixels from an inner tile edge within which a detection counts as cut by the edge.
EDGE_MARGIN = 2.0


@dataclass(frozen=True)
class MultiScale:
    """How to search a photo for faces down to a minimum size (see the module's doc)."""

    input_size: int = 640  # the detector's square input
    smallest_detectable: float = 16.0  # face size in detector pixels that is still found reliably
    default_min_face_size: float = 32.0  # used when a request gives none
    overlap: int = 160  # pixels shared by neighbouring tiles, at the tiles' scale
    nms_iou: float = 0.3

    def tile_scale(self, width: int, height: int, min_face_size: float) -> float | None:
        """Scale of the tiles for this photo, or None when the shrunk pass alone finds faces of that size."""
        wanted = min_face_size if min_face_size > 0 else self.default_min_face_size
        full = self.input_size / max(width, height)
        if full >= 1.0 or wanted * full >= self.smallest_detectable:
            return None
        return min(1.0, self.smallest_detectable / wanted)

    def tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) tiles of at most input_size covering width x height with `overlap`."""
        step = self.input_size - self.overlap

        def starts(length: int) -> list[int]:
            if length <= self.input_size:
                return [0]
            count = -(-(length - self.input_size) // step) + 1
            last = length - self.input_size
            return sorted({min(i * step, last) for i in range(count)})

        return [
            (x, y, min(x + self.input_size, width), min(y + self.input_size, height))
            for y in starts(height)
            for x in starts(width)
        ]

    def detect(self, detector: FaceDetector, image_bgr: np.ndarray, min_face_size: float = 0.0) -> list[Detection]:
        found = list(detector.detect(image_bgr))
        height, width = image_bgr.shape[:2]
        scale = self.tile_scale(width, height, min_face_size)
        if scale is None:
            return found
        scaled = image_bgr
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            scaled = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        s_height, s_width = scaled.shape[:2]
        for x0, y0, x1, y1 in self.tiles(s_width, s_height):
            for detection in detector.detect(np.ascontiguousarray(scaled[y0:y1, x0:x1])):
                bx0, by0, bx1, by1 = detection.box
                cut = (
                    (x0 > 0 and bx0 < EDGE_MARGIN)
                    or (y0 > 0 and by0 < EDGE_MARGIN)
                    or (x1 < s_width and bx1 > (x1 - x0) - EDGE_MARGIN)
                    or (y1 < s_height and by1 > (y1 - y0) - EDGE_MARGIN)
                )
                if cut:
                    continue
                offset = np.array([x0, y0], np.float32)
                found.append(
                    dataclasses.replace(
                        detection,
                        box=(
                            (bx0 + x0) / scale,
                            (by0 + y0) / scale,
                            (bx1 + x0) / scale,
                            (by1 + y0) / scale,
                        ),
                        landmarks=((np.asarray(detection.landmarks, np.float32) + offset) / scale).astype(np.float32),
                    )
                )
        if not found:
            return found
        boxes = np.array([d.box for d in found], np.float32)
        scores = np.array([d.score for d in found], np.float32)
        return [found[i] for i in nms(boxes, scores, self.nms_iou)]
