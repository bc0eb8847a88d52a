"""The face pipeline: decoded image -> detect -> align -> embed.

The detector, aligner and recognizer are interfaces; the real ones (YuNet, the
insightface 5-point alignment, SFace on onnxruntime) live in `adapters`, and unit
tests use small hand-written fakes. Models that share a detector and an aligner (the
identity model and the kinship network bound to it) embed the same aligned crop, so
a face is detected and aligned once however many models embed it. Recognizers that
are column views of one joint network (`ColumnView`: the identity and kinship outputs
of one graph) run that network once for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kinship.embedder.domain.geometry import box_area, face_size, resize_crop
from kinship.embedder.domain.quality import FaceQuality, assess
from kinship.embedder.domain.tiling import MultiScale

#: Side of the aligned face every recognizer takes (ArcFace template).
ALIGNED_SIZE = 112


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
class FaceAttributes:
    """Age and sex estimated by the pack's attribute model (insightface `genderage`)."""

    age: float
    sex: str  # "female" or "male"


@dataclass(frozen=True)
class EmbeddedFace:
    """A detection with the L2-normalised embedding of its aligned face.

    `quality` is the detection score times the crop's sharpness (see `quality`), and
    `details` its parts (face size, sharpness, landmark symmetry); `additional_embeddings`
    are the same aligned face embedded by other models that share this detector and
    aligner, in the order they were asked for. `attributes` is None when the pack has
    no attribute model. A pre-aligned crop has no detection of its own: its
    `detection` covers the whole crop with score 1 and no landmarks (`pre_aligned`).
    """

    detection: Detection
    embedding: np.ndarray
    quality: float
    additional_embeddings: tuple[np.ndarray, ...] = ()
    details: FaceQuality | None = None
    attributes: FaceAttributes | None = None
    pre_aligned: bool = False


@dataclass(frozen=True)
class FaceOptions:
    """Per-request choices: which detected faces are kept (all checked before any embedding runs).

    `min_face_size` (pixels, the shorter side of the box; 0: the service's default for
    the search and no filter), `min_quality` (0..1), `max_faces` (0: all), and
    `largest_face_only` (the biggest box, for one-person photos).
    """

    max_faces: int = 0
    min_face_size: float = 0.0
    min_quality: float = 0.0
    largest_face_only: bool = False


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

    def embed_batch(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Raw embeddings (N, dimension) of N aligned faces, in one model run."""


class AttributeEstimator(Protocol):
    def estimate(self, image_bgr: np.ndarray, detection: Detection) -> FaceAttributes:
        """Age and sex of the detected face."""


class ColumnView:
    """A FaceRecognizer that is some columns of a joint recognizer's output (e.g. identity | kinship).

    Alone it runs the joint recognizer itself; in one pipeline run beside other views of
    the same joint recognizer, the joint recognizer runs once and each view takes its columns.
    """

    def __init__(self, joint: FaceRecognizer, start: int, stop: int):
        if not 0 <= start < stop <= joint.dimension:
            raise ValueError(f"columns {start}:{stop} are not within the joint output's {joint.dimension}")
        self.joint = joint
        self.columns = slice(start, stop)
        self.dimension = stop - start

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        return self.embed_batch([aligned_bgr])[0]

    def embed_batch(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        return self.take(self.joint.embed_batch(faces_bgr))

    def take(self, joint_rows: np.ndarray) -> np.ndarray:
        return np.asarray(joint_rows, dtype=np.float32)[:, self.columns]


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """The unit vector of `vector`, float32; raises ValueError on a zero or non-finite vector."""
    values = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(values))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"the recognizer returned an embedding with norm {norm}; it cannot be normalised")
    return values / norm


class FacePipeline:
    """Detects, aligns and embeds the faces of one image, most confident first.

    `multiscale` (see `tiling`) makes the detector find faces smaller than a single
    shrunk pass would; without it (unit fakes) the detector runs once on the image.
    """

    def __init__(
        self,
        detector: FaceDetector,
        aligner: FaceAligner,
        recognizer: FaceRecognizer,
        *,
        multiscale: MultiScale | None = None,
        attributes: AttributeEstimator | None = None,
    ):
        self._detector = detector
        self._aligner = aligner
        self._recognizer = recognizer
        self._multiscale = multiscale
        self._attributes = attributes

    @property
    def dimension(self) -> int:
        return self._recognizer.dimension

    @property
    def recognizer(self) -> FaceRecognizer:
        return self._recognizer

    @property
    def has_attributes(self) -> bool:
        return self._attributes is not None

    def with_recognizer(self, recognizer: FaceRecognizer) -> FacePipeline:
        """A pipeline with this very detector and aligner and another recognizer (see `shares_front_end`)."""
        return FacePipeline(
            self._detector, self._aligner, recognizer, multiscale=self._multiscale, attributes=self._attributes
        )

    def shares_front_end(self, other: FacePipeline) -> bool:
        """Whether `other` uses this very detector and aligner: the same detections give it the same crops."""
        return self._detector is other._detector and self._aligner is other._aligner

    def embed_aligned(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The L2-normalised embedding of one aligned face; ValueError when the recognizer misbehaves."""
        return self.embed_many([aligned_bgr])[0]

    def embed_many(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """L2-normalised embeddings of aligned faces, in one recognizer run; ValueError when it misbehaves."""
        if not crops:
            return []
        return self._normalised(self._recognizer.embed_batch(list(crops)), len(crops))

    def embed_with(self, crops: Sequence[np.ndarray], also: Sequence[FacePipeline]) -> list[list[np.ndarray]]:
        """This pipeline's and each of `also`'s embeddings of the same crops; joint networks run once."""
        pipelines = [self, *also]
        if not crops:
            return [[] for _ in pipelines]
        joint_rows: dict[int, np.ndarray] = {}
        out = []
        for pipeline in pipelines:
            recognizer = pipeline._recognizer
            if isinstance(recognizer, ColumnView):
                key = id(recognizer.joint)
                if key not in joint_rows:
                    joint_rows[key] = np.asarray(recognizer.joint.embed_batch(list(crops)), dtype=np.float32)
                raw = recognizer.take(joint_rows[key])
            else:
                raw = recognizer.embed_batch(list(crops))
            out.append(pipeline._normalised(raw, len(crops)))
        return out

    def _normalised(self, raw_rows, count: int) -> list[np.ndarray]:
        raw = np.asarray(raw_rows, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[0] != count:
            raise ValueError(f"the recognizer returned {raw.shape} for {count} faces")
        if raw.shape[1] != self.dimension:
            raise ValueError(f"the recognizer returned {raw.shape[1]} values, not {self.dimension}")
        return [l2_normalise(row) for row in raw]

    def detect(self, image_bgr: np.ndarray, min_face_size: float = 0.0) -> list[Detection]:
        """Every face found, most confident first (multi-scale when configured)."""
        if self._multiscale is None:
            found = self._detector.detect(image_bgr)
        else:
            found = self._multiscale.detect(self._detector, image_bgr, min_face_size)
        return sorted(found, key=lambda d: d.score, reverse=True)

    def run(
        self,
        image_bgr: np.ndarray,
        max_faces: int = 0,
        also: Sequence[FacePipeline] = (),
        *,
        options: FaceOptions | None = None,
    ) -> list[EmbeddedFace]:
        """Faces sorted by detection score, descending, after the request's filters (see FaceOptions).

        Faces dropped by a filter or beyond `max_faces` are dropped before embedding, so
        they cost nothing. Each face is detected and aligned once; all kept faces run
        through the recognizer in one batch, and the pipelines in `also` (which must
        share this detector and aligner) embed the same crops.
        """
        options = options or FaceOptions(max_faces=max_faces)
        for other in also:
            if not self.shares_front_end(other):
                raise ValueError("a pipeline in `also` does not share this pipeline's detector and aligner")
        detections = self.detect(image_bgr, options.min_face_size)
        if options.min_face_size > 0:
            detections = [d for d in detections if face_size(d.box) >= options.min_face_size]
        if options.largest_face_only and detections:
            detections = [max(detections, key=lambda d: box_area(d.box))]
        kept: list[tuple[Detection, np.ndarray, FaceQuality]] = []
        for detection in detections:
            if options.max_faces > 0 and len(kept) >= options.max_faces:
                break
            aligned = self._aligner.align(image_bgr, detection.landmarks)
            details = assess(detection.score, detection.box, detection.landmarks, aligned)
            if details.overall < options.min_quality:
                continue
            kept.append((detection, aligned, details))
        crops = [aligned for _, aligned, _ in kept]
        primary, *others = self.embed_with(crops, also)
        faces = []
        for i, (detection, _, details) in enumerate(kept):
            faces.append(
                EmbeddedFace(
                    detection=detection,
                    embedding=primary[i],
                    quality=details.overall,
                    additional_embeddings=tuple(vectors[i] for vectors in others),
                    details=details,
                    attributes=self._attributes.estimate(image_bgr, detection) if self._attributes else None,
                )
            )
        return faces

    def run_aligned(
        self, crop_bgr: np.ndarray, also: Sequence[FacePipeline] = (), *, min_quality: float = 0.0
    ) -> list[EmbeddedFace]:
        """The face of a crop that is already aligned (ArcFace template, square): resized, embedded, no detection.

        Returns one face, or none when its quality is below `min_quality`.
        """
        for other in also:
            if not self.shares_front_end(other):
                raise ValueError("a pipeline in `also` does not share this pipeline's detector and aligner")
        height, width = crop_bgr.shape[:2]
        aligned = resize_crop(crop_bgr, ALIGNED_SIZE)
        box = (0.0, 0.0, float(width), float(height))
        detection = Detection(box=box, landmarks=np.zeros((0, 2), np.float32), score=1.0)
        details = assess(1.0, box, None, aligned)
        if details.overall < min_quality:
            return []
        primary, *others = self.embed_with([aligned], also)
        return [
            EmbeddedFace(
                detection=detection,
                embedding=primary[0],
                quality=details.overall,
                additional_embeddings=tuple(vectors[0] for vectors in others),
                details=details,
                pre_aligned=True,
            )
        ]
