"""`training autolabel`: propose boxes for images that are labelled per image, not per box.

Seizure archives and reference collections are sorted into folders by class; a detector needs
boxes. Two proposers:

- `segment`, for one object on a plain background (museum and studio shots): the background colour
  is estimated from the image border, everything far from it (in Lab) is foreground, and each
  large connected component is one object. An image whose border is not plain, or whose
  foreground fills the frame or is tiny, is not guessed.
- `salient`, for photos in the wild with one main subject (a pet reptile, a pangolin): GrabCut,
  started from a rectangle just inside the frame, separates the subject from its surroundings;
  its largest region is the box. Rough: it seeds a detector rather than labelling on its own.
- `detect`, for photos in the wild: a detector trained on the boxed data (and the salient seeds)
  proposes boxes; a box is kept only when its class agrees with the image's label and either its
  confidence is high or the salient box, an independent proposer, agrees with it (IoU >= 0.5).
  `--any-class` accepts any class, for a class the proposer has not learned well.

Images that get no confident box are listed in needs_review.txt for a person. Contact sheets
(PNG grids with the proposed boxes drawn) go into the output folder: look at them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from server.core.detections import Detections
from server.core.decoding import decode
from server.core.taxonomy import LABELS, NAMES, by_label
from training import sheets
from training.layout import LabelBox, image_files_under, write_labels

ANALYSIS_SIDE = 256


@dataclass(frozen=True)
class Proposal:
    image: Path
    boxes: list[tuple[float, float, float, float]]
    """Pixels of the upright image."""
    score: float
    reason: str = ""
    """Why no box was proposed; empty when boxes were."""
    size: tuple[int, int] = (0, 0)


def _plain_foreground(image: np.ndarray) -> tuple[np.ndarray | None, float, float, str]:
    """Foreground mask at analysis size (None and a reason when the border is not plain), the scale, the border spread."""
    height, width = image.shape[:2]
    scale = ANALYSIS_SIDE / max(height, width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32)
    background = _background_model(lab)
    edge = np.zeros(lab.shape[:2], bool)
    edge[:4], edge[-4:], edge[:, :4], edge[:, -4:] = True, True, True, True
    residual = np.linalg.norm(lab - background, axis=2)
    spread = float(np.percentile(residual[edge], 90))
    if spread > 14:
        return None, scale, spread, f"background not plain (border spread {spread:.0f})"
    mask = (residual > max(14.0, 2.5 * spread + 8.0)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return mask, scale, spread, ""


def plain_background_mask(image: np.ndarray) -> np.ndarray | None:
    """Full-size 0/1 mask of what stands out from a plain background (a cut-out for compositing);
    None when the background is not plain."""
    mask, *_ = _plain_foreground(image)
    if mask is None or not mask.any():
        return None
    return cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)


def segment_plain_background(image: np.ndarray, min_area: float = 0.01, max_fill: float = 0.92) -> tuple[list, float, str]:
    """Boxes of the objects on a plain background, a quality score in 0..1, and a reason when none."""
    height, width = image.shape[:2]
    mask, scale, spread, why = _plain_foreground(image)
    if mask is None:
        return [], 0.0, why
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area = mask.shape[0] * mask.shape[1]
    boxes = []
    for i in range(1, count):
        x, y, w, h, pixels = stats[i]
        if pixels >= min_area * area:
            boxes.append((x / scale, y / scale, (x + w) / scale, (y + h) / scale))
    if not boxes:
        return [], 0.0, "no object stands out from the background"
    boxes = _merge_overlapping(boxes)
    fill = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes) / (width * height)
    if fill > max_fill:
        return [], 0.0, f"object fills the frame ({fill:.0%}): cannot tell object from background"
    if len(boxes) > 6:
        return [], 0.0, f"{len(boxes)} separate regions: cluttered, not one object on a plain background"
    return boxes, float(np.clip(1.0 - spread / 14.0, 0.0, 1.0)), ""


def _background_model(lab: np.ndarray, border: int = 4) -> np.ndarray:
    """A smooth (quadratic) background fitted to the image border: studio sweeps shade from light to
    dark, and a single background colour would call half of such a backdrop foreground."""
    h, w = lab.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    x, y = xs / max(w - 1, 1) - 0.5, ys / max(h - 1, 1) - 0.5
    design = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)
    edge = np.zeros((h, w), bool)
    edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    # Robust fit: fit, drop the border pixels furthest off (an object touching the border), refit.
    keep = edge.copy()
    for _ in range(2):
        coeffs, *_ = np.linalg.lstsq(design[keep], lab[keep], rcond=None)
        fitted = design @ coeffs
        off = np.linalg.norm(lab - fitted, axis=2)
        keep = edge & (off <= np.percentile(off[edge], 80))
    return fitted


def segment_salient(image: np.ndarray, iterations: int = 3) -> tuple[list, float, str]:
    """The main subject's box by GrabCut from a rectangle 4% inside the frame; a reason when none."""
    height, width = image.shape[:2]
    scale = min(1.0, ANALYSIS_SIDE / max(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    if min(sh, sw) < 16:
        return [], 0.0, "too small to segment"
    rect = (int(0.04 * sw), int(0.04 * sh), int(0.92 * sw), int(0.92 * sh))
    mask = np.zeros((sh, sw), np.uint8)
    cv2.grabCut(small, mask, rect, np.zeros((1, 65)), np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_RECT)
    foreground = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(foreground)
    if count < 2:
        return [], 0.0, "no subject separates from the surroundings"
    i = 1 + int(np.argmax(stats[1:, 4]))
    x, y, w, h, area = stats[i]
    if area < 0.03 * sw * sh:
        return [], 0.0, f"subject region tiny ({area / (sw * sh):.0%})"
    fill = (w * h) / (rect[2] * rect[3])
    if fill > 0.85:
        return [], 0.0, f"subject fills the frame ({fill:.0%}): cannot tell it from its surroundings"
    return [(x / scale, y / scale, (x + w) / scale, (y + h) / scale)], float(area / (w * h)), ""


def _merge_overlapping(boxes: list) -> list:
    """Join boxes that overlap (an object broken into parts by a highlight or a gap)."""
    merged = True
    boxes = [list(b) for b in boxes]
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, c = boxes[i], boxes[j]
                if a[0] <= c[2] and c[0] <= a[2] and a[1] <= c[3] and c[1] <= a[3]:
                    boxes[i] = [min(a[0], c[0]), min(a[1], c[1]), max(a[2], c[2]), max(a[3], c[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(b) for b in boxes]


def propose_by_segmentation(images: list[Path], method: str = "segment") -> list[Proposal]:
    """`segment` (plain background) or `salient` (GrabCut) proposals for each image."""
    segmenter = {"segment": segment_plain_background, "salient": segment_salient}[method]
    out = []
    for path in tqdm(images, desc=method, unit="img"):
        try:
            decoded = decode(path.read_bytes())
        except Exception as exc:
            out.append(Proposal(path, [], 0.0, f"unreadable: {exc}"))
            continue
        boxes, score, reason = segmenter(decoded.pixels)
        out.append(Proposal(path, boxes, score, reason, (decoded.width, decoded.height)))
    return out


def propose_by_detector(
    images: list[Path], detector: Path, label: str, min_confidence: float = 0.5, any_class: bool = False,
    device: str = "auto", batch: int = 8, second_opinion: dict[Path, Proposal] | None = None, agreeing_confidence: float = 0.2,
) -> list[Proposal]:
    """Detector boxes of `label` at >= min_confidence; with `second_opinion` (e.g. salient boxes),
    also boxes at >= agreeing_confidence that overlap the other proposer's box (IoU >= 0.5)."""
    from training.export import box_iou
    from training.modelfile import candidate_engine, detect_in_files

    engine = candidate_engine(detector, device)
    wanted = by_label(label).id
    floor = min(min_confidence, agreeing_confidence) if second_opinion else min_confidence
    out = []
    for path, p, found in detect_in_files(engine, images, floor, batch, desc=f"proposing {label}"):
        candidates = found if any_class else found[found.class_id == wanted]
        keep = candidates.confidence >= min_confidence
        other = (second_opinion or {}).get(path)
        if other is not None and other.boxes and len(candidates):
            agrees = box_iou(candidates.xyxy, np.array(other.boxes, np.float32)).max(axis=1) >= 0.5
            keep |= agrees
        kept = candidates[keep]
        if len(kept):
            out.append(Proposal(path, [tuple(map(float, b)) for b in kept.xyxy], float(kept.confidence.max()), "", (p.width, p.height)))
        else:
            best = f"best was {NAMES[int(found.class_id[0])]} {found.confidence[0]:.2f}" if len(found) else "nothing found"
            out.append(Proposal(path, [], 0.0, f"no {label} box at confidence >= {min_confidence}, nor one the second opinion agrees with ({best})", (p.width, p.height)))
    return out


def contact_sheet(proposals: list[Proposal], label: str, path: Path, limit: int = 64) -> Path:
    """Proposals drawn on a contact sheet, all boxes of the image's class with the proposal's score."""
    class_id = by_label(label).id
    items = []
    for p in proposals:
        n = len(p.boxes)
        boxes = Detections(np.array(p.boxes, np.float32).reshape(-1, 4), np.full(n, p.score, np.float32), np.full(n, class_id, np.int64))
        items.append((p.image, boxes, p.image.name))
    return sheets.contact_sheet(items, path, limit=limit)


@dataclass
class AutolabelResult:
    accepted: list[Proposal] = field(default_factory=list)
    needs_review: list[Proposal] = field(default_factory=list)

    def lines(self, label: str) -> list[str]:
        total = len(self.accepted) + len(self.needs_review)
        return [f"{label}: boxed {len(self.accepted)} of {total} images ({sum(len(p.boxes) for p in self.accepted)} boxes); "
                f"{len(self.needs_review)} listed for a person"]


def write_export(result: AutolabelResult, label: str, out: Path, source_root: Path) -> None:
    """Accepted proposals as a YOLO export (images linked, labels written) that `training import yolo`
    takes; the rest in needs_review.txt with the reason."""
    class_id = by_label(label).id
    for p in result.accepted:
        rel = p.image.relative_to(source_root)
        image_link = out / "images" / rel
        image_link.parent.mkdir(parents=True, exist_ok=True)
        if image_link.is_symlink() or image_link.exists():
            image_link.unlink()
        image_link.symlink_to(p.image.resolve())
        w, h = p.size
        write_labels((out / "labels" / rel).with_suffix(".txt"), [LabelBox.from_xyxy(class_id, b, w, h) for b in p.boxes])
    (out / "data.yaml").write_text("names:\n" + "".join(f"  {k}: {v}\n" for k, v in NAMES.items()))
    (out / "needs_review.txt").write_text("".join(f"{p.image}\t{p.reason}\n" for p in result.needs_review))


def autolabel(
    images: list[Path], label: str, method: str, out: Path, source_root: Path, detector: Path | None = None,
    min_confidence: float = 0.5, any_class: bool = False, device: str = "auto",
) -> AutolabelResult:
    if method in ("segment", "salient"):
        proposals = propose_by_segmentation(images, method)
    elif method == "detect":
        if detector is None:
            raise ValueError("--method detect needs --detector")
        proposals = propose_by_detector(images, detector, label, min_confidence, any_class, device)
    else:
        raise ValueError(f"unknown method {method!r}")
    result = AutolabelResult([p for p in proposals if p.boxes], [p for p in proposals if not p.boxes])
    out.mkdir(parents=True, exist_ok=True)
    write_export(result, label, out, source_root)
    contact_sheet(result.accepted, label, out / f"contact_{label}.png")
    if result.needs_review:
        contact_sheet(result.needs_review, label, out / f"contact_{label}_needs_review.png")
    return result


def cmd_autolabel(args: argparse.Namespace) -> int:
    images = image_files_under(args.images)
    if not images:
        print(f"training autolabel: no images under {args.images}")
        return 2
    result = autolabel(images, args.label, args.method, args.out, Path(args.images), args.detector, args.min_confidence,
                       args.any_class, args.device)
    print("\n".join(result.lines(args.label)))
    print(f"wrote {args.out} (import it with `training import yolo {args.out} --dataset ...`), "
          f"contact sheets contact_{args.label}*.png, and needs_review.txt")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("autolabel", help="propose boxes for images labelled per image",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("images", type=Path, help="folder of images that all show --label")
    p.add_argument("--label", required=True, choices=LABELS)
    p.add_argument("--method", choices=["segment", "salient", "detect"], required=True)
    p.add_argument("--detector", type=Path, help="for --method detect: a trained .pt")
    p.add_argument("--min-confidence", type=float, default=0.5)
    p.add_argument("--any-class", action="store_true", help="accept boxes of any class (the proposer never saw this one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True, help="YOLO export of the accepted boxes, contact sheets, needs_review.txt")
    p.set_defaults(handler=cmd_autolabel)
