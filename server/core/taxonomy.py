"""The class taxonomy: the one place that knows what wildscreen detects.

Class ids are part of every model file and every label file, so they never change between
retrains. The taxonomy only grows: a new class gets the next id, a retired class keeps its id
forever. A model names the classes it detects in its manifest (ids and labels from here), so a
model trained before a class was added is served as it is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WildlifeClass:
    id: int
    label: str
    covers: str
    # BGR colour of this class's boxes in reviewer overlays: distinct, and readable on photos.
    colour_bgr: tuple[int, int, int]


TAXONOMY: tuple[WildlifeClass, ...] = (
    WildlifeClass(0, "ivory", "elephant, walrus, hippo and whale ivory: tusks, carvings, jewellery", (0, 215, 255)),
    WildlifeClass(1, "pangolin_scales", "pangolin scales, loose or bagged, and whole pangolins or their parts", (255, 128, 0)),
    WildlifeClass(2, "tiger_parts", "whole tigers, skins, claws, teeth and bones", (0, 64, 255)),
    WildlifeClass(3, "live_reptile", "live reptiles: snakes, lizards, geckos, chameleons, crocodilians, turtles", (60, 200, 60)),
)

LABELS: tuple[str, ...] = tuple(c.label for c in TAXONOMY)
NAMES: dict[int, str] = {c.id: c.label for c in TAXONOMY}
"""Ultralytics' `names` mapping, as written into data yamls and model files."""



def by_label(label: str) -> WildlifeClass:
    """The class called `label`; KeyError names the known labels."""
    for c in TAXONOMY:
        if c.label == label:
            return c
    raise KeyError(f"unknown class {label!r}; known classes: {', '.join(c.label for c in TAXONOMY)}")


def by_id(class_id: int) -> WildlifeClass:
    if not 0 <= class_id < len(TAXONOMY):
        raise KeyError(f"unknown class id {class_id}; ids are 0..{len(TAXONOMY) - 1}")
    return TAXONOMY[class_id]
