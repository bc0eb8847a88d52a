"""Faces of a data set as the embedder sees them, and the features training learns from.

Every image goes through the embedder's own detector and alignment (the default
pack's YuNet and the 5-point ArcFace alignment), so the network is trained and
measured on the crops it will be served. Tight pre-cropped faces (KinFaceW's 64x64)
are upscaled and padded first, as a detector needs some background; an image where
no face is found falls back to a plain resize of the whole image (counted and
reported).

Training sees each face in several views: the aligned crop, its mirror image, and
`augmented_views` random variations (a small shift, scale and rotation, brightness
and contrast, sometimes grey, sometimes mirrored) so that the projection learns
what survives such changes and not one photo's accidents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime

from kinship.domain import faces as faces_rule
from kinship.embedder.public import FACE_SIZE, Detection, LoadedPack

from .dataset import KinshipDataset

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class AlignedFaces:
    crops: np.ndarray  # (images, 112, 112, 3) BGR uint8
    undetected: int  # images that fell back to a plain resize


def as_photo(crop: np.ndarray) -> np.ndarray:
    """A tight face crop made into a photo a detector expects: twice the size, with grey background around it."""
    face = cv2.resize(crop, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    pad = face.shape[0] // 2
    return cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def _most_prominent(detections: list[Detection]) -> Detection:
    """The face a photo is about, by the suite's one rule (`kinship.domain.faces`); `detections` is never empty."""
    chosen = faces_rule.most_prominent(detections, lambda d: faces_rule.prominence(*d.box[:4], d.score))
    assert chosen is not None
    return chosen


def align_dataset(dataset: KinshipDataset, pack: LoadedPack, progress: Progress | None = None) -> AlignedFaces:
    """Each image's most prominent face, detected and aligned by the served pipeline's parts."""
    from kinship.embedder.public import ArcFaceAligner

    aligner = ArcFaceAligner(FACE_SIZE)
    crops = np.empty((len(dataset.images), FACE_SIZE, FACE_SIZE, 3), np.uint8)
    undetected = 0
    for index in range(len(dataset.images)):
        image = cv2.imread(str(dataset.image_path(index)), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{dataset.image_path(index)} cannot be decoded as an image")
        photo = as_photo(image) if max(image.shape[:2]) < 200 else image
        detections = pack.detector.detect(photo)
        if detections:
            crops[index] = aligner.align(photo, _most_prominent(detections).landmarks)
        else:
            undetected += 1
            crops[index] = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC)
        if progress:
            progress(index + 1, len(dataset.images))
    return AlignedFaces(crops, undetected)


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random variation of an aligned BGR crop (float32 0..255)."""
    scale = rng.uniform(0.85, 1.0)
    angle = rng.uniform(-8.0, 8.0)
    shift = rng.uniform(-5.0, 5.0, 2)
    centre = (FACE_SIZE / 2, FACE_SIZE / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0 / scale)
    matrix[:, 2] += shift
    out = cv2.warpAffine(crop, matrix, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    out = out * rng.uniform(0.75, 1.25) + rng.uniform(-20.0, 20.0)
    if rng.random() < 0.2:
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out, 0.0, 255.0)


@dataclass(frozen=True)
class Features:
    """Per image and view: pooled trunk features and the identity embedding.

    View 0 is the aligned crop as served, view 1 its mirror, views 2.. augmented.
    """

    pooled: np.ndarray  # (images, views, 1024) float32
    identity: np.ndarray  # (images, views, d) float32, L2-normalised


def extract_features(
    crops: np.ndarray,
    trunk: bytes,
    *,
    augmented_views: int,
    seed: int,
    threads: int = 2,
    batch: int = 32,
    progress: Progress | None = None,
) -> Features:
    """Runs the trunk (see `network.trunk_model`) over every view of every crop."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(trunk, sess_options=options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    views = 2 + augmented_views
    pooled, identity = [], []
    for start in range(0, len(crops), batch):
        chunk = crops[start : start + batch].astype(np.float32)
        stack = [chunk, chunk[:, :, ::-1]]
        stack += [np.stack([augment(c, rng) for c in chunk]) for _ in range(augmented_views)]
        blob = np.stack(stack, axis=1).reshape(-1, FACE_SIZE, FACE_SIZE, 3)
        blob = np.ascontiguousarray(blob[..., ::-1].transpose(0, 3, 1, 2))  # BGR HWC -> RGB CHW
        features, raw_identity = session.run(["features", "identity"], {"data": blob})
        pooled.append(features.reshape(len(chunk), views, -1))
        raw_identity = raw_identity / np.linalg.norm(raw_identity, axis=1, keepdims=True)
        identity.append(raw_identity.reshape(len(chunk), views, -1))
        if progress:
            progress(min(start + batch, len(crops)), len(crops))
    return Features(np.concatenate(pooled).astype(np.float32), np.concatenate(identity).astype(np.float32))
