"""The face pipeline: decoded image -> detect -> align -> embed.

The detector, aligner and recognizer are interfaces; the real ones (YuNet, the
insightface 5-point alignment, SFace on onnxruntime) live in `adapters`, and unit
tests use small hand-written fakes. Models that share a detector and an aligner (the
identity model and the kinship network bound to it) embed the same aligned crop, so
a face is detected and aligned once however many models embed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kinship.embedder.domain.quality import face_quality


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
    """A detection with the L2-normalised embedding of its aligned face.

    `quality` is the detection score times the crop's sharpness (see `quality`);
    `additional_embeddings` are the same aligned face embedded by other models that
    share this detector and aligner, in the order they were asked for.
    """

    detection: Detection
    embedding: np.ndarray
    quality: float
    additional_embeddings: tuple[np.ndarray, ...] = ()


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

    def with_recognizer(self, recognizer: FaceRecognizer) -> FacePipeline:
        """A pipeline with this very detector and aligner and another recognizer (see `shares_front_end`)."""
        return FacePipeline(self._detector, self._aligner, recognizer)

    def shares_front_end(self, other: FacePipeline) -> bool:
        """Whether `other` uses this very detector and aligner: the same detections give it the same crops."""
        return self._detector is other._detector and self._aligner is other._aligner

    def embed_aligned(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The L2-normalised embedding of one aligned face; ValueError when the recognizer misbehaves."""
        embedding = l2_normalise(self._recognizer.embed(aligned_bgr))
        if embedding.shape[0] != self.dimension:
            raise ValueError(f"the recognizer returned {embedding.shape[0]} values, not {self.dimension}")
        return embedding

    def run(self, image_bgr: np.ndarray, max_faces: int = 0, also: Sequence[FacePipeline] = ()) -> list[EmbeddedFace]:
        """Faces sorted by detection score, descending; `max_faces` > 0 keeps only that many.

        Faces beyond `max_faces` are dropped before embedding, so they cost nothing.
        Each face is detected and aligned once; the pipelines in `also` (which must
        share this detector and aligner) embed the same crop.
        """
        for other in also:
            if not self.shares_front_end(other):
                raise ValueError("a pipeline in `also` does not share this pipeline's detector and aligner")
        detections = sorted(self._detector.detect(image_bgr), key=lambda d: d.score, reverse=True)
        if max_faces > 0:
            detections = detections[:max_faces]
        faces = []
        for detection in detections:
            aligned = self._aligner.align(image_bgr, detection.landmarks)
            faces.append(
                EmbeddedFace(
                    detection=detection,
                    embedding=self.embed_aligned(aligned),
                    quality=face_quality(detection.score, aligned),
                    additional_embeddings=tuple(other.embed_aligned(aligned) for other in also),
                )
            )
        return faces
