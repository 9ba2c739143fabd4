"""The v2 additions to `training build-default --v2`: listing-style data and sources held out whole.

v1 learned ivory as "one object on a plain background", never saw a product photo as a negative,
and had reptiles from one web collection. v2 adds, from ../shared:

- `products/`: marketplace photos as background images; whole shop repositories are held out, one
  set for the final evaluation (`holdout` split) and one for calibrating thresholds (`calibration`);
- `reptiles-more/`: 11 other reptile sources; four held out for evaluation, three for calibration,
  the rest boxed by the proposal detector for training;
- `wildscan/`: the seizure photos of ivory, pangolin scales and tiger parts (boxes written by a
  person, `recipes/wildscan_boxes.csv`), its traded reptiles (boxed like the reptiles) and its
  hard negatives; whole groups (a seizure series, a species) go to train, calibration or holdout.

The held-out choices are written down here on purpose, so that a rebuild holds out the same sources.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from pathlib import Path

from training.formats import import_source
from training.labelling.autolabel import AutolabelResult, Proposal, contact_sheet, propose_by_detector, write_export
from training.layout import Dataset, image_files_under, link_view
from training.mapping import ClassMapping

WILDSCAN_BOXES = Path(__file__).parent / "wildscan_boxes.csv"

# Shop repositories of products/ held out whole (file names are <owner>__<repo>__<n>.jpg).
PRODUCT_ROLES = {
    "mattdyer__alligatorleather2": "holdout", "NateWardDev__lagravinese-jewelry": "holdout",
    "Joyline-Rencita__Wood-Art-Website": "holdout", "le-arch__aesthetiq": "holdout", "GaganJadhav10__toyopia": "holdout",
    "natashacd__mpc_petshop": "holdout", "sommerfe__Sommer-Flohmarkt": "holdout",
    "Eveyn2020__PotteryWebsite": "calibration", "ABDELHAKELK__TUFTART.github.io": "calibration",
    "kulpreetsingh90__Toyland": "calibration", "shactrix__furryfriendfinder": "calibration",
    "opencart__opencart": "calibration", "KayozDMistry__Crochet": "calibration",
}
# Reptile sources of reptiles-more/ held out whole: a pet shop, herpetology photos, pets at home, a shop demo
# for evaluation; a zoo site and a breeder for calibration.
REPTILE_ROLES = {
    "n8ta__Herpetology": "holdout", "AlanaBF__kernowpets": "holdout", "bpfefferle__bearded-dragon-owners": "holdout",
    "KacperKubic__React-Website": "holdout", "aradhikari39__TermProject1": "calibration",
    "PapaGex__northern-herpetoculture": "calibration",
}
# Shares of wildscan's groups (per class) held out for evaluation and for calibration.
WILDSCAN_SHARES = {"holdout": 0.3, "calibration": 0.2}
ROLE_SOURCE = {"train": "{}", "holdout": "{}-heldout", "calibration": "{}-calib"}
PRODUCT_CLASSES = ("ivory", "pangolin_scales", "tiger_parts")
REPTILE_MIN_CONFIDENCE = 0.3
WILDSCAN_TRAIN_PRODUCTS = "wildscan-products"


def repository_of(path: Path) -> str:
    return path.name.rsplit("__", 1)[0]


def wildscan_group(row: dict) -> str:
    """Seizure photos: one photographer's series is one group (the letters of the file name, so that
    'photo-2' and 'photo' join); other photos: one species is one group."""
    if row["class"] in PRODUCT_CLASSES:
        return re.sub(r"[^a-z]", "", Path(row["file"]).stem.lower())
    return f"species{row['species_id']}"


def assign_groups(groups: dict[str, int], shares: dict[str, float], seed: int) -> dict[str, str]:
    """Whole groups to roles, seeded, so that each role gets about its share of the images."""
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    total = sum(groups.values())
    filled = {role: 0 for role in shares}
    out = {}
    for g in order:
        role = next((r for r, share in shares.items() if filled[r] + groups[g] <= share * total + 0.5), "train")
        if role != "train":
            filled[role] += groups[g]
        out[g] = role
    return out


def wildscan_rows(shared: Path, seed: int) -> list[dict]:
    """labels.csv rows with their `group` and `role` (train, calibration, holdout), assigned per class."""
    with open(shared / "data" / "wildscan" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_class: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        r["group"] = wildscan_group(r)
        by_class[r["class"]].append(r)
    for label, members in sorted(by_class.items()):
        sizes: dict[str, int] = defaultdict(int)
        for r in members:
            sizes[r["group"]] += 1
        roles = assign_groups(sizes, WILDSCAN_SHARES, seed)
        for r in members:
            r["role"] = roles[r["group"]]
    return rows


def wildscan_product_export(shared: Path, rows: list[dict], out: Path) -> dict[str, Path]:
    """The seizure photos with the boxes a person wrote for them, one YOLO export per class."""
    from server.core.decoding import probe

    with open(WILDSCAN_BOXES, newline="") as f:
        boxes = {r["file"]: r for r in csv.DictReader(f)}
    root = shared / "data" / "wildscan"
    exports = {}
    for label in PRODUCT_CLASSES:
        accepted = []
        for r in rows:
            if r["class"] == label and r["role"] == "train" and r["file"] in boxes:
                b = boxes[r["file"]]
                path = root / r["file"]
                header = probe(path.read_bytes())
                w, h = header.width, header.height
                box = (float(b["x1"]) * w, float(b["y1"]) * h, float(b["x2"]) * w, float(b["y2"]) * h)
                accepted.append(Proposal(path, [box], 1.0, "", (w, h)))
        target = out / label
        write_export(AutolabelResult(accepted, []), label, target, root)
        contact_sheet(accepted, label, target / f"contact_{label}.png")
        exports[label] = target
    return exports


def box_reptiles(images: list[Path], root: Path, proposer: Path, out: Path, device: str) -> Path:
    """Boxes for live reptiles of the training role: the proposal detector's live_reptile boxes at
    >= 0.3 on images known to show a reptile (no GrabCut second opinion: on a 2-core CPU it costs
    more than the boxes it adds; the contact sheets were checked by eye instead)."""
    if (out / "needs_review.txt").exists():
        return out
    proposals = propose_by_detector(images, proposer, "live_reptile", REPTILE_MIN_CONFIDENCE, False, device)
    result = AutolabelResult([p for p in proposals if p.boxes], [p for p in proposals if not p.boxes])
    write_export(result, "live_reptile", out, root)
    contact_sheet(result.accepted, "live_reptile", out / "contact_live_reptile.png")
    if result.needs_review:
        contact_sheet(result.needs_review, "live_reptile", out / "contact_live_reptile_needs_review.png")
    return out


def _group_csv(rows: list[tuple[str, str]], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "group"])
        writer.writerows(rows)
    return f"csv:{path}"


def import_new_sources(ds: Dataset, shared: Path, work: Path, proposer: Path, device: str, seed: int) -> dict[str, str]:
    """Import products/, reptiles-more/ and wildscan/ into `ds`; returns the sources kept apart ->
    split: holdout or calibration (held out whole), train (train only)."""
    data = shared / "data"
    held: dict[str, str] = {}
    # products: background images, grouped by shop repository.
    products = image_files_under(data / "products")
    for role in ("train", "calibration", "holdout"):
        files = [p for p in products if PRODUCT_ROLES.get(repository_of(p), "train") == role]
        view = link_view(files, data / "products", work / "views" / f"products-{role}")
        name = ROLE_SOURCE[role].format("products")
        groups = _group_csv([(p.relative_to(data / "products").as_posix(), repository_of(p)) for p in files], work / f"{name}_groups.csv")
        import_source("negatives", view, ds, name, ClassMapping(), group=groups, link=True)
        if role != "train":
            held[name] = role
    # reptiles-more: boxed for training; held-out sources in whole, with their image-level label.
    reptiles = image_files_under(data / "reptiles-more")
    for role in ("train", "calibration", "holdout"):
        files = [p for p in reptiles if REPTILE_ROLES.get(repository_of(p), "train") == role]
        name = ROLE_SOURCE[role].format("reptiles-more")
        groups = _group_csv([(p.relative_to(data / "reptiles-more").as_posix(), repository_of(p)) for p in files], work / f"{name}_groups.csv")
        if role == "train":
            export = box_reptiles(files, data / "reptiles-more", proposer, work / "autolabel" / "reptiles-more", device)
            import_source("yolo", export, ds, name, ClassMapping(), group=groups, link=True, image_label="live_reptile")
        else:
            view = link_view(files, data / "reptiles-more", work / "views" / name)
            import_source("negatives", view, ds, name, ClassMapping(), group=groups, link=True, image_label="live_reptile")
            held[name] = role
    held |= import_wildscan(ds, shared, work, proposer, device, seed)
    return held


def import_wildscan(ds: Dataset, shared: Path, work: Path, proposer: Path, device: str, seed: int) -> dict[str, str]:
    root = shared / "data" / "wildscan"
    rows = wildscan_rows(shared, seed)
    held: dict[str, str] = {}
    products = wildscan_product_export(shared, rows, work / "autolabel" / "wildscan-products")
    train_reptiles = [root / r["file"] for r in rows if r["class"] == "live_reptile" and r["role"] == "train"]
    reptile_export = box_reptiles(train_reptiles, root, proposer, work / "autolabel" / "wildscan-reptiles", device)
    for role in ("train", "calibration", "holdout"):
        name = ROLE_SOURCE[role].format("wildscan")
        members = [r for r in rows if r["role"] == role]
        groups = _group_csv([(Path(r["file"]).name, r["group"]) for r in members], work / f"{name}_groups.csv")
        for label in ("ivory", "pangolin_scales", "tiger_parts", "live_reptile", "none"):
            files = [root / r["file"] for r in members if r["class"] == label]
            if not files:
                continue
            image_label = "" if label == "none" else label
            if role == "train" and label == "live_reptile":
                import_source("yolo", reptile_export, ds, name, ClassMapping(), group=groups, link=True, image_label=image_label)
            elif role == "train" and label in PRODUCT_CLASSES:
                # So few that every one not held out is trained on (a group-aware split would send some to val/test).
                import_source("yolo", products[label], ds, WILDSCAN_TRAIN_PRODUCTS, ClassMapping(), group=groups, link=True,
                              image_label=image_label)
                held[WILDSCAN_TRAIN_PRODUCTS] = "train"
            else:
                view = link_view(files, root / "images", work / "views" / f"{name}-{label}")
                import_source("negatives", view, ds, name, ClassMapping(), group=groups, link=True, image_label=image_label)
        if role != "train":
            held[name] = role
    return held


def held_out_lines(held: dict[str, str]) -> list[str]:
    """For BUILD.md: which sources were held out whole, and for what."""
    return [
        f"- held out for evaluation (holdout split): {', '.join(sorted(s for s, r in held.items() if r == 'holdout'))};",
        f"- held out for calibrating thresholds (calibration split): {', '.join(sorted(s for s, r in held.items() if r == 'calibration'))};",
        f"- products/ repositories held out: {', '.join(sorted(PRODUCT_ROLES))};",
        f"- reptiles-more/ sources held out: {', '.join(sorted(REPTILE_ROLES))};",
        f"- wildscan/: whole groups (a seizure series, a species) held out per class, shares {WILDSCAN_SHARES}; "
        f"seizure-photo boxes written by a person ({WILDSCAN_BOXES.name}); the seizure photos not held out are all in train "
        f"({WILDSCAN_TRAIN_PRODUCTS});",
    ]
