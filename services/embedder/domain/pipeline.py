"""The face pipeline: decoded image -> detect -> align -> embed.

The detector, aligner and recognizer are interfaces; the real ones (YuNet, the
insightface 5-point alignment, SFace on onnxruntime) live in `adapters`, and unit
tests use small hand-written fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face found by a detector, in pixels of the original image.

    `box` is (x_min, y_min, x_max, y_max); `landmarks` is (5, 2): right eye, left
    eye, nose tip, right mouth corner, left mouth corner (the subject's sides).
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float


@dataclass(frozen=True)
class EmbeddedFace:
    """A detection with the L2-normalised embedding of its aligned face."""

    detection: Detection
    embedding: np.ndarray


class FaceDetector(Protocol):
    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Every face in a BGR uint8 (H, W, 3) image, in any order."""


class FaceAligner(Protocol):
    def align(self, image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The face crop that the recognizer expects (e.g. 112x112 BGR), from 5 landmarks."""


class FaceRecognizer(Protocol):
    #: Length of the embeddings it returns.
    dimension: int

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The raw (not necessarily normalised) embedding of one aligned face."""


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """The unit vector of `vector`, float32; raises ValueError on a zero or non-finite vector."""
    values = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(values))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"the recognizer returned an embedding with norm {norm}; it cannot be normalised")
    return values / norm


class FacePipeline:
    """Detects, aligns and embeds the faces of one image, most confident first."""

    def __init__(self, detector: FaceDetector, aligner: FaceAligner, recognizer: FaceRecognizer):
        self._detector = detector
        self._aligner = aligner
        self._recognizer = recognizer

    @property
    def dimension(self) -> int:
        return self._recognizer.dimension

    def run(self, image_bgr: np.ndarray, max_faces: int = 0) -> list[EmbeddedFace]:
        """Faces sorted by detection score, descending; `max_faces` > 0 keeps only that many.

        Faces beyond `max_faces` are dropped before embedding, so they cost nothing.
        """
        detections = sorted(self._detector.detect(image_bgr), key=lambda d: d.score, reverse=True)
        if max_faces > 0:
            detections = detections[:max_faces]
        faces = []
        for detection in detections:
            aligned = self._aligner.align(image_bgr, detection.landmarks)
            embedding = l2_normalise(self._recognizer.embed(aligned))
            if embedding.shape[0] != self.dimension:
                raise ValueError(f"the recognizer returned {embedding.shape[0]} values, not {self.dimension}")
            faces.append(EmbeddedFace(detection=detection, embedding=embedding))
        return faces
