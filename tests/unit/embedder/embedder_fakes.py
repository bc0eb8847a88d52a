"""Hand-written fakes of the embedder's interfaces (detector, aligner, recognizer, onnx session)."""

from __future__ import annotations

import numpy as np

from kinship.embedder.domain.pipeline import Detection


def detection(score: float, x: float = 10.0, y: float = 10.0, size: float = 40.0) -> Detection:
    """A square face at (x, y) with plausible landmarks."""
    landmarks = np.array(
        [
            [x + 0.3 * size, y + 0.4 * size],
            [x + 0.7 * size, y + 0.4 * size],
            [x + 0.5 * size, y + 0.6 * size],
            [x + 0.35 * size, y + 0.8 * size],
            [x + 0.65 * size, y + 0.8 * size],
        ],
        dtype=np.float32,
    )
    return Detection(box=(x, y, x + size, y + size), landmarks=landmarks, score=score)


class FakeDetector:
    """Returns the given detections, whatever the image; remembers the images it saw."""

    def __init__(self, detections: list[Detection]):
        self.detections = detections
        self.images: list[np.ndarray] = []

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        self.images.append(image_bgr)
        return list(self.detections)


class CropAligner:
    """Crops the landmarks' bounding square and resizes nothing: enough to tell faces apart."""

    def align(self, image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        x, y = np.floor(landmarks.min(axis=0)).astype(int)
        return image_bgr[max(y, 0) : y + 8, max(x, 0) : x + 8]


class FixedCropAligner:
    """Returns the same crop for every face (for example a real face photo, sharp or blurred)."""

    def __init__(self, crop: np.ndarray):
        self.crop = crop
        self.calls = 0

    def align(self, image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.crop


class RecordingRecognizer:
    """Gives an unnormalised vector that encodes where the aligned crop came from.

    The vector is (3, 4, 0, ...) scaled by the crop's first pixel + 1, so its norm is
    never 1 and tests can check normalisation; it records each call.
    """

    def __init__(self, dimension: int = 8, vector: np.ndarray | None = None):
        self.dimension = dimension
        self.vector = vector
        self.calls = 0
        self.crops: list[np.ndarray] = []

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.crops.append(aligned_bgr)
        if self.vector is not None:
            return self.vector
        out = np.zeros(self.dimension, dtype=np.float32)
        out[:2] = (3.0, 4.0)
        return out * (float(aligned_bgr.reshape(-1)[0]) + 1.0)

    def embed_batch(self, faces_bgr) -> np.ndarray:
        """One row per face (each recorded as a call); `batches` records the size of each batch."""
        self.batches = [*getattr(self, "batches", []), len(faces_bgr)]
        return np.stack([np.asarray(self.embed(face), np.float32).reshape(-1) for face in faces_bgr])


class FakeOnnxSession:
    """Answers `run` with fixed outputs by name; records the feeds it got."""

    def __init__(self, outputs: dict[str, np.ndarray]):
        self.outputs = outputs
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, output_names, input_feed):
        self.feeds.append(input_feed)
        return [self.outputs[name] for name in output_names]
