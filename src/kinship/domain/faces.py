"""Which face a photo is about, when a detector finds several."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

Face = TypeVar("Face")


def prominence(x_min: float, y_min: float, x_max: float, y_max: float, score: float) -> float:
    """How prominent a detected face is: its box area x its detection score."""
    return max(0.0, x_max - x_min) * max(0.0, y_max - y_min) * score


def most_prominent(faces: Iterable[Face], weight: Callable[[Face], float]) -> Face | None:
    """The face a photo is about: the largest `weight` (`prominence` of its box and score),
    the first on a tie; None without faces."""
    best: Face | None = None
    best_weight = -1.0
    for face in faces:
        value = weight(face)
        if value > best_weight:
            best, best_weight = face, value
    return best
