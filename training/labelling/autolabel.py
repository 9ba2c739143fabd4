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

import numpy as np
from tqdm import tqdm

from server.core.detections import Detections
from server.core.decoding import decode
from server.core.taxonomy import LABELS, NAMES, by_label
from server.core.yolo_files import LabelBox, write_labels
from training import sheets
from training.labelling.segment import segment_plain_background, segment_salient
from training.layout import image_files_under
from training.metrics import box_iou
from training.modelfile import candidate_engine, detect_in_files
from server.settings import HelpFormatter

@dataclass(frozen=True)
class Proposal:
    image: Path
    boxes: list[tuple[float, float, float, float]]
    """Pixels of the upright image."""
    score: float
    reason: str = ""
    """Why no box was proposed; empty when boxes were."""
    size: tuple[int, int] = (0, 0)


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


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("autolabel", help="propose boxes for images labelled per image",
                       formatter_class=HelpFormatter)
    p.add_argument("images", type=Path, help="folder of images that all show --label")
    p.add_argument("--label", required=True, choices=LABELS)
    p.add_argument("--method", choices=["segment", "salient", "detect"], required=True)
    p.add_argument("--detector", type=Path, help="for --method detect: a trained .pt")
    p.add_argument("--min-confidence", type=float, default=0.5)
    p.add_argument("--any-class", action="store_true", help="accept boxes of any class (the proposer never saw this one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True, help="YOLO export of the accepted boxes, contact sheets, needs_review.txt")
    p.set_defaults(handler=cmd_autolabel)
