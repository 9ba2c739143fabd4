"""Reviewer overlays: the verdict, the boxes with their scores beside their class's thresholds, and
a legend, drawn onto the upright image.

Line width and font scale with the image, so labels are readable on a 600 px phone photo and on a
4000 px camera image alike. One colour per class (from the taxonomy); strongest boxes drawn last,
on top. A frame and a banner in the verdict's colour say the answer before anything is read.

What a person sees first is what reached its class's review threshold (`strong`, from the one
verdict rule); weaker boxes only on request, thin, faded and marked "weak", so five 0.01-0.23
boxes on a CLEAR image no longer look like finds. The review page follows the same rule.

Labels never overlap each other, the banner or the legend: each is placed at the first free spot
of a few beside its box (`place_labels`), strongest first.

Where the image-level head called for a class the detector did not box, its activation map is laid
over the image as a heat layer, with a dashed box drawn from it and labelled "image-level": the
reviewer sees where the head looked, and that it is not a detection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from server.core.detections import Detections
from server.core.taxonomy import by_id

FONT = cv2.FONT_HERSHEY_SIMPLEX
VERDICT_COLOURS_BGR = {"CLEAR": (70, 160, 50), "REVIEW": (0, 165, 255), "FLAG": (40, 40, 215)}
"""The frame and banner: green, amber, red (BGR)."""

Rect = tuple[int, int, int, int]
"""left, top, right, bottom in pixels."""


@dataclass(frozen=True)
class HeatMark:
    """The image-level head's evidence for one class: its activation map and the box drawn from it."""

    class_id: int
    heat_map: np.ndarray
    """(h, w) in 0..1 on the backbone's grid."""
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 as fractions of the image."""
    score: float
    thresholds: tuple[float, float | None] | None = None


@dataclass(frozen=True)
class Style:
    line: int
    scale: float
    thickness: int
    pad: int

    @classmethod
    def for_line(cls, line: int) -> Style:
        return cls(line, line / 3.0, max(1, line // 2), max(2, line))

    def size(self, text: str) -> tuple[int, int]:
        """Width and height of a text label with its padding."""
        (tw, th), baseline = cv2.getTextSize(text, FONT, self.scale, self.thickness)
        return tw + 2 * self.pad, th + baseline + self.pad


def line_width_for(width: int, height: int) -> int:
    """About 0.3% of the image's mean side: 2 px at 600 px, 10 px at 4000 px."""
    return max(2, round(0.003 * (width + height) / 2))


def _text_colour(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = background_bgr
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(boxes: Sequence[Rect], sizes: Sequence[tuple[int, int]], width: int, height: int,
                 taken: Sequence[Rect] = ()) -> list[Rect]:
    """A rectangle for each box's label, in order (put the strongest first): above the box's top
    left corner, inside it, below it, or inside its bottom; failing those, further down beside the
    box until a free place is found. Never overlapping one another or `taken`, always inside the image."""
    placed: list[Rect] = []
    occupied = list(taken)
    for (x1, y1, x2, y2), (w, h) in zip(boxes, sizes):
        left = max(0, min(x1, width - w))

        def at(top: int) -> Rect:
            top = max(0, min(top, height - h))
            return (left, top, left + w, top + h)

        candidates = [at(y1 - h), at(y1), at(y2), at(y2 - h)]
        candidates += [at(top) for top in range(y1 + h, height - h + 1, max(1, h // 2))]
        candidates += [at(top) for top in range(0, height - h + 1, max(1, h // 2))]
        rect = next((c for c in candidates if not any(_overlaps(c, o) for o in occupied)), candidates[0])
        placed.append(rect)
        occupied.append(rect)
    return placed


def _draw_label(canvas: np.ndarray, text: str, rect: Rect, colour: tuple[int, int, int], style: Style) -> None:
    """Text on a solid background of the class's colour: readable on any photo."""
    left, top, right, bottom = rect
    cv2.rectangle(canvas, (left, top), (right, bottom), colour, -1)
    (_, th), _ = cv2.getTextSize(text, FONT, style.scale, style.thickness)
    cv2.putText(canvas, text, (left + style.pad, top + th + style.pad // 2), FONT, style.scale, _text_colour(colour),
                style.thickness, cv2.LINE_AA)


def _box_text(label: str, confidence: float, thresholds: tuple[float, float | None] | None, weak: bool) -> str:
    text = f"{label} {confidence:.2f}"
    if thresholds is not None:
        review, flag = thresholds
        text += f" (review {review:.2f}" + (f", flag {flag:.2f})" if flag is not None else ", never flags)")
    return text + (" weak" if weak else "")


def _banner(canvas: np.ndarray, lines: Sequence[str], colour: tuple[int, int, int], style: Style) -> Rect:
    """Lines across the top in the verdict's colour; returns the area it covers."""
    top = 0
    for text in lines:
        w, h = style.size(text)
        _draw_label(canvas, text, (0, top, min(canvas.shape[1], max(w, canvas.shape[1])), top + h), colour, style)
        top += h
    return (0, 0, canvas.shape[1], top)


def _legend(canvas: np.ndarray, class_ids: Sequence[int], style: Style, inset: int) -> Rect | None:
    """A swatch and name per class, left to right along the bottom edge, inside the frame."""
    if not class_ids:
        return None
    height, width = canvas.shape[:2]
    h = style.size("Ag")[1]
    bottom = height - inset
    top, left = bottom - h, inset
    for class_id in class_ids:
        cls = by_id(class_id)
        w = style.size(cls.label)[0]
        if left + w > width - inset:
            break
        _draw_label(canvas, cls.label, (left, top, left + w, bottom), cls.colour_bgr, style)
        left += w
    return (0, top, left, height)


def _heat_layer(canvas: np.ndarray, marks: Sequence[HeatMark]) -> np.ndarray:
    """The maps, upsampled and coloured, blended in where they are warm (the rest stays as it was)."""
    height, width = canvas.shape[:2]
    heat = np.zeros((height, width), np.float32)
    for mark in marks:
        heat = np.maximum(heat, cv2.resize(mark.heat_map.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC))
    heat = np.clip(heat, 0.0, 1.0)
    coloured = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (0.5 * heat)[..., None]
    return (canvas * (1 - alpha) + coloured * alpha).astype(np.uint8)


def _dashed_rectangle(canvas: np.ndarray, rect: Rect, colour: tuple[int, int, int], line: int) -> None:
    x1, y1, x2, y2 = rect
    dash = max(4, 4 * line)
    for a in range(x1, x2, 2 * dash):
        for y in (y1, y2):
            cv2.line(canvas, (a, y), (min(a + dash, x2), y), colour, line, cv2.LINE_AA)
    for a in range(y1, y2, 2 * dash):
        for x in (x1, x2):
            cv2.line(canvas, (x, a), (x, min(a + dash, y2)), colour, line, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, detections: Detections, caption: str = "", strong: np.ndarray | None = None,
                 weaker: bool = False, verdict: str = "", thresholds: Mapping[int, tuple[float, float | None]] | None = None,
                 notes: Sequence[str] = (), heat: Sequence[HeatMark] = ()) -> np.ndarray:
    """A copy of BGR `image` with `detections` drawn.

    `verdict` ("CLEAR", "REVIEW" or "FLAG") colours a frame and a banner that carries it with
    `caption` (e.g. the model) and `notes` (e.g. what the model's card says it is weak at); without
    a verdict, `caption` is a plain line at the bottom. `thresholds` (class id -> review, flag) are
    written beside each box's score. `strong` marks the detections that reached their class's
    review threshold (all, when None); the others are drawn only with `weaker`, faded and thin.
    `heat` marks what only the image-level head found: a heat layer and a dashed "image-level" box."""
    canvas = _heat_layer(image, heat) if heat else image.copy()
    height, width = canvas.shape[:2]
    line = line_width_for(width, height)
    style, thin = Style.for_line(line), Style.for_line(max(1, line // 2))
    strong = np.ones(len(detections.confidence), bool) if strong is None else np.asarray(strong, bool)
    weak = [int(i) for i in np.argsort(detections.confidence, kind="stable") if not strong[i]] if weaker else []
    shown = [int(i) for i in np.argsort(detections.confidence, kind="stable") if strong[i]]

    taken: list[Rect] = []
    frame = 2 * line if verdict else 0
    if verdict:
        colour = VERDICT_COLOURS_BGR.get(verdict, (40, 40, 40))
        for edge in (np.s_[:frame, :], np.s_[-frame:, :], np.s_[:, :frame], np.s_[:, -frame:]):
            canvas[edge] = colour
        taken.append(_banner(canvas, [" - ".join(t for t in (verdict, caption) if t), *notes], colour, style))
    legend = _legend(canvas, sorted({int(detections.class_id[i]) for i in shown + weak} | {m.class_id for m in heat}),
                     style, frame)
    if legend is not None:
        taken.append(legend)

    def boxes_of(indices: list[int]) -> list[Rect]:
        return [tuple(int(round(v)) for v in detections.xyxy[i]) for i in indices]

    # Strongest first gets the best place; drawn weakest first so the strongest ends on top.
    order = shown[::-1] + weak[::-1]
    texts = [_box_text(by_id(int(detections.class_id[i])).label, float(detections.confidence[i]),
                       thresholds.get(int(detections.class_id[i])) if thresholds else None, i in weak) for i in order]
    sizes = [(thin if i in weak else style).size(t) for i, t in zip(order, texts)]

    for mark, rect in zip(heat, place_labels([_heat_rect(m, width, height) for m in heat],
                                             [style.size(_heat_text(m)) for m in heat], width, height, taken)):
        colour = by_id(mark.class_id).colour_bgr
        _dashed_rectangle(canvas, _heat_rect(mark, width, height), colour, line)
        _draw_label(canvas, _heat_text(mark), rect, colour, style)
        taken.append(rect)
    rects = dict(zip(order, zip(texts, place_labels(boxes_of(order), sizes, width, height, taken))))
    if weak:
        faded = canvas.copy()
        for i, (x1, y1, x2, y2) in zip(weak, boxes_of(weak)):
            cls = by_id(int(detections.class_id[i]))
            cv2.rectangle(faded, (x1, y1), (x2, y2), cls.colour_bgr, thin.line, cv2.LINE_AA)
            _draw_label(faded, rects[i][0], rects[i][1], cls.colour_bgr, thin)
        canvas = cv2.addWeighted(faded, 0.55, canvas, 0.45, 0)
    for i, (x1, y1, x2, y2) in zip(shown, boxes_of(shown)):
        cv2.rectangle(canvas, (x1, y1), (x2, y2), by_id(int(detections.class_id[i])).colour_bgr, line, cv2.LINE_AA)
    for i in shown:  # labels after every box: no box line crosses a label
        _draw_label(canvas, rects[i][0], rects[i][1], by_id(int(detections.class_id[i])).colour_bgr, style)
    if caption and not verdict:
        w, h = style.size(caption)
        top = height - h - (legend[3] - legend[1] if legend else 0)
        _draw_label(canvas, caption, (0, top, min(w, width), top + h), (40, 40, 40), style)
    return canvas


def _heat_rect(mark: HeatMark, width: int, height: int) -> Rect:
    x1, y1, x2, y2 = mark.box
    return (int(x1 * width), int(y1 * height), min(width - 1, int(x2 * width)), min(height - 1, int(y2 * height)))


def _heat_text(mark: HeatMark) -> str:
    return _box_text(by_id(mark.class_id).label, mark.score, mark.thresholds, weak=False) + " image-level"
