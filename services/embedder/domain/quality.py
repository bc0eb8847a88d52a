"""How usable a detected face is for comparison: detector confidence times sharpness.

Sharpness is the variance of the Laplacian of the aligned crop's grey levels (a blurred
face has little high-frequency energy), measured on the inner face only, so that the
background and the black border that alignment adds near an image's edge do not count.
Pure numpy: no OpenCV, no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Laplacian variance at which a face counts as fully sharp (factor 1). Measured with the
#: default pack (YuNet + insightface alignment to 112x112) on every face it finds in
#: insightface's sample images (t1.jpg: 6 faces, 95-118 px wide; Tom_Hanks_54745.png: 1
#: face; the mask_*.jpg images give no detection): 150-350, median 224. After a Gaussian
#: blur of the aligned crop, sigma 1 px: 30-54; sigma 2 px: 6-11; sigma 3 px: 2-4. 100 sits
#: below every sharp sample face (a plain, slightly soft photo still scores 1) and well
#: above what a blur of 1 px leaves (about 0.3-0.5), so blur lowers the quality in
#: proportion. tests/integration/test_embedder_service.py checks both sides of it.
SHARPNESS_REFERENCE = 100.0

# Inner face of an ArcFace-aligned crop, as fractions of its height and width: from the
# eyebrows to the chin, cheek to cheek (eyes sit at 46% of the height, the mouth at 82%).
_ROWS = (0.20, 0.95)
_COLS = (0.15, 0.85)
# ITU-R BT.601 luma weights of B, G, R (what OpenCV's BGR2GRAY uses).
_LUMA_BGR = np.array([0.114, 0.587, 0.299])


def laplacian_variance(aligned_bgr: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the inner face's grey levels (0 for a flat or tiny crop)."""
    pixels = np.asarray(aligned_bgr, dtype=np.float64)
    grey = pixels @ _LUMA_BGR if pixels.ndim == 3 else pixels
    height, width = grey.shape[:2]
    inner = grey[int(_ROWS[0] * height) : int(_ROWS[1] * height), int(_COLS[0] * width) : int(_COLS[1] * width)]
    if inner.shape[0] < 3 or inner.shape[1] < 3:
        return 0.0
    laplacian = inner[:-2, 1:-1] + inner[2:, 1:-1] + inner[1:-1, :-2] + inner[1:-1, 2:] - 4.0 * inner[1:-1, 1:-1]
    return float(laplacian.var())


def sharpness_factor(aligned_bgr: np.ndarray, reference: float = SHARPNESS_REFERENCE) -> float:
    """min(1, Laplacian variance / reference), in [0, 1]."""
    return min(1.0, laplacian_variance(aligned_bgr) / reference)


def face_quality(detection_score: float, aligned_bgr: np.ndarray) -> float:
    """Detector confidence times the crop's sharpness factor, in [0, 1]."""
    score = min(1.0, max(0.0, float(detection_score)))
    return score * sharpness_factor(aligned_bgr)


@dataclass(frozen=True)
class FaceQuality:
    """The parts of a face's quality, each reported to the caller.

    `size`: shorter side of the box in pixels; `detection_score` in [0, 1]; `sharpness`:
    the factor above, in [0, 1]; `symmetry`: how frontal the landmarks are, in [0, 1]
    (1: the nose sits midway between the eyes, as in a frontal face; 0: a profile;
    1 for a pre-aligned crop, which has no landmarks); `overall` = detection score x
    sharpness (what `Face.quality` always was).
    """

    size: float
    detection_score: float
    sharpness: float
    symmetry: float
    overall: float


def landmark_symmetry(landmarks: np.ndarray | None) -> float:
    """1 - |d_right - d_left| / (d_right + d_left), where d is the nose tip's distance to each eye.

    Turning the head moves the nose towards one eye in the image, so a profile scores
    near 0 and a frontal face 1. Landmarks: right eye, left eye, nose, mouth corners.
    """
    if landmarks is None or len(landmarks) < 3:
        return 1.0
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    d_right = float(np.linalg.norm(points[2] - points[0]))
    d_left = float(np.linalg.norm(points[2] - points[1]))
    total = d_right + d_left
    if total <= 0 or not np.isfinite(total):
        return 0.0
    return max(0.0, 1.0 - abs(d_right - d_left) / total)


def assess(
    detection_score: float,
    box: tuple[float, float, float, float],
    landmarks: np.ndarray | None,
    aligned_bgr: np.ndarray,
) -> FaceQuality:
    score = min(1.0, max(0.0, float(detection_score)))
    sharpness = sharpness_factor(aligned_bgr)
    return FaceQuality(
        size=max(0.0, min(box[2] - box[0], box[3] - box[1])),
        detection_score=score,
        sharpness=sharpness,
        symmetry=landmark_symmetry(landmarks),
        overall=score * sharpness,
    )
