"""`training composite`: paste real objects onto real backgrounds, boxes written from the paste.

v1 learned that "one object on a plain studio background" is ivory. Composites break that: museum
ivory, cut out by its plain-background segmentation, is pasted onto product photos (tables,
shelves, hands, floors) with varied scale, position, rotation, colour, blur and JPEG quality. The
box is the bounding rectangle of the pasted mask, so it is exact by construction.

Only the training split is used on both sides (cut-outs of train objects, train backgrounds), and
the composites go into train only (the source is `train_only` for `training split`), so nothing
of val, test, calibration or holdout leaks in through a paste.

    python -m training composite --dataset data/default/dataset --count 400
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from server.core.detections import Detections
from server.core.decoding import decode
from server.core.taxonomy import by_label
from server.core.yolo_files import LabelBox, write_labels
from training.labelling.segment import plain_background_mask
from training.layout import Dataset, MetaRow
from training.sheets import contact_sheet
from server.settings import HelpFormatter

COMPOSITES = "composites"


@dataclass(frozen=True)
class CompositeOptions:
    count: int = 400
    objects_source: str = "met-ivory"
    label: str = "ivory"
    backgrounds_source: str = "products"
    min_scale: float = 0.2
    """Longer side of the pasted object as a share of the background's shorter side, lowest..."""
    max_scale: float = 0.7
    max_rotation: float = 30.0
    two_objects: float = 0.2
    """Share of composites with a second object pasted."""
    seed: int = 0


@dataclass(frozen=True)
class Cutout:
    pixels: np.ndarray
    mask: np.ndarray
    """0/1, cropped to the object."""
    origin: Path


def cutout(path: Path) -> Cutout | None:
    """The object of a plain-background photo, cropped to its mask; None when none separates."""
    pixels = decode(path.read_bytes()).pixels
    mask = plain_background_mask(pixels)
    if mask is None:
        return None
    ys, xs = np.nonzero(mask)
    if len(xs) < 0.01 * mask.size or len(xs) > 0.9 * mask.size:
        return None
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Cutout(pixels[y1:y2, x1:x2].copy(), mask[y1:y2, x1:x2].copy(), path)


def _transform(c: Cutout, side: float, rng: np.random.Generator, max_rotation: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale the cut-out so its longer side is `side` px, rotate, flip, jitter its colour."""
    h, w = c.mask.shape
    s = side / max(h, w)
    pixels = cv2.resize(c.pixels, (max(2, round(w * s)), max(2, round(h * s))), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(c.mask * 255, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    h, w = mask.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos) + 1, int(h * cos + w * sin) + 1
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    pixels = cv2.warpAffine(pixels, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    mask = cv2.warpAffine(mask, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    if rng.random() < 0.5:
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
    hsv = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] *= rng.uniform(0.7, 1.3)
    hsv[..., 2] *= rng.uniform(0.7, 1.2)
    pixels = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    return pixels, np.ascontiguousarray(mask)


def paste(background: np.ndarray, objects: list[Cutout], rng: np.random.Generator, options: CompositeOptions) -> tuple[np.ndarray, list]:
    """`background` with the objects pasted (feathered edges); returns the image and xyxy boxes."""
    out = background.astype(np.float32)
    bh, bw = out.shape[:2]
    boxes = []
    for c in objects:
        side = rng.uniform(options.min_scale, options.max_scale) * min(bh, bw)
        pixels, mask = _transform(c, side, rng, options.max_rotation)
        h, w = mask.shape
        if h >= bh or w >= bw:
            continue
        y, x = int(rng.integers(0, bh - h)), int(rng.integers(0, bw - w))
        alpha = cv2.GaussianBlur(mask, (5, 5), 0).astype(np.float32)[..., None] / 255.0
        region = out[y : y + h, x : x + w]
        out[y : y + h, x : x + w] = alpha * pixels.astype(np.float32) + (1 - alpha) * region
        ys, xs = np.nonzero(mask > 127)
        if len(xs):
            boxes.append((float(x + xs.min()), float(y + ys.min()), float(x + xs.max() + 1), float(y + ys.max() + 1)))
    image = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        image = cv2.GaussianBlur(image, (k, k), 0)
    return image, boxes


def composite_into(dataset: Dataset, options: CompositeOptions, sheets: Path | None = None) -> dict:
    """Write `options.count` composites into `dataset` as source `composites`, add them to the train
    split, and return a record (counts, options) that is also written beside the images."""
    splits = dataset.read_splits()
    meta = dataset.read_meta()
    train = splits["train"]
    source_of = {p: meta[r].source if (r := dataset.relative(p)) in meta else "" for p in train}
    objects = [p for p in train if source_of[p] == options.objects_source]
    backgrounds = [p for p in train if source_of[p] == options.backgrounds_source]
    if not objects or not backgrounds:
        raise ValueError(f"the train split needs images of {options.objects_source!r} (objects) and "
                         f"{options.backgrounds_source!r} (backgrounds); found {len(objects)} and {len(backgrounds)}")
    rng = np.random.default_rng(options.seed)
    cutouts = [c for p in tqdm(objects, desc="cut-outs", unit="img") if (c := cutout(p)) is not None]
    if not cutouts:
        raise ValueError(f"no object of {options.objects_source!r} separates from a plain background")
    class_id = by_label(options.label).id
    folder = dataset.root / "images" / COMPOSITES
    folder.mkdir(parents=True, exist_ok=True)
    written, shown = [], []
    for i in tqdm(range(options.count), desc="composites", unit="img"):
        background_path = backgrounds[int(rng.integers(len(backgrounds)))]
        background = decode(background_path.read_bytes()).pixels
        chosen = [cutouts[int(rng.integers(len(cutouts)))] for _ in range(2 if rng.random() < options.two_objects else 1)]
        image, boxes = paste(background, chosen, rng, options)
        if not boxes:
            continue
        target = folder / f"composite_{i:05d}.jpg"
        cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))])
        h, w = image.shape[:2]
        write_labels(dataset.label_path(target), [LabelBox.from_xyxy(class_id, b, w, h) for b in boxes])
        rel = dataset.relative(target)
        origin = " + ".join([dataset.relative(background_path)] + [dataset.relative(c.origin) for c in chosen])
        meta[rel] = MetaRow(rel, COMPOSITES, f"{COMPOSITES}/{i:05d}", origin, options.label)
        written.append(target)
        n = len(boxes)
        shown.append((target, Detections(np.array(boxes, np.float32), np.ones(n, np.float32), np.full(n, class_id)), target.name))
    dataset.write_meta(meta)
    kept = {dataset.relative(p) for p in written}
    dataset.write_splits(splits | {"train": [p for p in train if dataset.relative(p) not in kept] + written})
    record = {"options": asdict(options), "cutouts": len(cutouts), "objects": len(objects), "backgrounds": len(backgrounds),
              "composites": len(written)}
    (folder / "composites.json").write_text(json.dumps(record, indent=2))
    if sheets is not None:
        contact_sheet(shown, Path(sheets) / "contact_composites.png")
    return record


def cmd_composite(args: argparse.Namespace) -> int:
    options = CompositeOptions(count=args.count, objects_source=args.objects_source, label=args.label,
                               backgrounds_source=args.backgrounds_source, min_scale=args.min_scale, max_scale=args.max_scale,
                               seed=args.seed)
    record = composite_into(Dataset(args.dataset), options, args.sheets)
    print(f"{record['composites']} composites from {record['cutouts']} cut-outs of {record['objects']} {options.objects_source} images "
          f"on {record['backgrounds']} {options.backgrounds_source} backgrounds, added to train"
          + (f"; contact sheet in {args.sheets}" if args.sheets else ""))
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("composite", help="paste cut-outs onto real backgrounds, boxes from the paste (train split only)",
                       formatter_class=HelpFormatter)
    defaults = CompositeOptions()
    p.add_argument("--dataset", type=Path, required=True, help="a split dataset (train.txt must exist)")
    p.add_argument("--count", type=int, default=defaults.count)
    p.add_argument("--objects-source", default=defaults.objects_source, help="source of plain-background photos to cut out")
    p.add_argument("--label", default=defaults.label, help="the class of the cut-outs")
    p.add_argument("--backgrounds-source", default=defaults.backgrounds_source, help="source of background images")
    p.add_argument("--min-scale", type=float, default=defaults.min_scale)
    p.add_argument("--max-scale", type=float, default=defaults.max_scale)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--sheets", type=Path, help="folder for a contact sheet of the composites (ignored by git: it shows the data)")
    p.set_defaults(handler=cmd_composite)
