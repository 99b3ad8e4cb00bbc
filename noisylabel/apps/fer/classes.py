"""The seven basic expressions in RAF-DB's class order (label file value - 1)."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "Surprise",
    "Fear",
    "Disgust",
    "Happiness",
    "Sadness",
    "Anger",
    "Neutral",
)
