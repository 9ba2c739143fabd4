"""`training build-default`: the default dataset, built reproducibly from ../shared.

    python -m training build-default --shared ../shared --out data/default

Stages (each skipped when its output exists, so an interrupted build resumes):
1. views     pick and cap the images of each source (seeded), as folders of symlinks
2. ivory     box the museum ivory by plain-background segmentation
3. salient   rough boxes for the reptile folders and the pangolins (GrabCut on the main subject)
4. proposer  train a detector on the boxed sources (tiger frames, boxed snakes, segmented ivory) and
             the salient seeds, with the look-alikes as background; for `--rounds` > 1, again on the
             boxes the previous round accepted
5. propose   box the reptile folders and the pangolins with it: a box is kept when its class agrees
             and it is confident, or when the salient box agrees with it; the rest are listed
6. dataset   import everything into data/default/dataset, check --fix, group-aware split with
             whole sources held out for the out-of-source check; BUILD.md records what and why

The choices (caps, exclusions, held-out sources) are in SOURCES below, written down on purpose.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.formats import import_source
from training.labelling.autolabel import AutolabelResult, Proposal, contact_sheet, propose_by_detector, propose_by_segmentation, write_export
from training.labelling.composite import COMPOSITES, CompositeOptions, composite_into
from training.layout import Dataset, image_files_under, link_file, link_view
from training.mapping import ClassMapping
from training.recipes.default_v2 import held_out_lines, import_new_sources
from training.steps.check import check_dataset, fix
from training.steps.split import split_dataset
from server.settings import HelpFormatter

REPTILE_FOLDERS = ("Crocodile_Alligator", "Gecko", "Iguana", "Lizard", "Snake", "Turtle_Tortoise")
HOLDOUT_SOURCES = ("reptiles-chameleon", "met-bone", "misc-products")
SPLIT_COLUMNS = ("train", "val", "test", "calibration", "holdout")


@dataclass(frozen=True)
class Caps:
    ivory: int = 600
    met_negatives: int = 500
    amphibians: int = 250
    tiger_every_nth_frame: int = 2
    reptiles_per_folder: int = 150
    salient_seeds_per_folder: int = 150


def _sample(files: list[Path], n: int, seed: int) -> list[Path]:
    files = sorted(files)
    random.Random(seed).shuffle(files)
    return sorted(files[:n])


def met_rows(shared: Path) -> list[dict]:
    with open(shared / "data" / "met-ivory" / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def is_painting(row: dict) -> bool:
    """Portrait miniatures and other painted surfaces: the material is under paint, a detector
    cannot see it. Left out of both ivory and the negatives (written down in BUILD.md)."""
    return "painting" in row["object_name"].lower() or "watercolor" in row["medium"].lower()


def build_views(shared: Path, work: Path, caps: Caps, seed: int) -> dict[str, Path]:
    data = shared / "data"
    views = {}
    rows = met_rows(shared)
    met = data / "met-ivory"
    ivory = [met / r["file"] for r in rows if r["class"] == "ivory" and not is_painting(r)]
    views["met-ivory"] = link_view(_sample(ivory, caps.ivory, seed), met, work / "views" / "met-ivory")
    plain_negatives = [met / r["file"] for r in rows if r["class"] == "none" and r["material_note"] == "non-ivory museum object" and not is_painting(r)]
    views["met-negatives"] = link_view(_sample(plain_negatives, caps.met_negatives, seed), met, work / "views" / "met-negatives")
    bone = [met / r["file"] for r in rows if r["class"] == "none" and r["material_note"] != "non-ivory museum object"]
    views["met-bone"] = link_view(bone, met, work / "views" / "met-bone")
    tiger = data / "tiger-video"
    frames = [p for p in image_files_under(tiger / "images") if int(re.search(r"(\d+)", p.stem).group(1)) % (2 * caps.tiger_every_nth_frame) == 0]
    views["tiger-video"] = link_view(frames, tiger, work / "views" / "tiger-video")
    link_view(sorted((tiger / "labels").rglob("*.txt")), tiger, views["tiger-video"])
    amphibians = image_files_under(data / "amphibians")
    views["amphibians"] = link_view(_sample(amphibians, caps.amphibians, seed), data / "amphibians", work / "views" / "amphibians")
    views["caltech-lookalikes"] = data / "negatives" / "caltech"
    views["misc-products"] = data / "negatives" / "misc"
    for folder in REPTILE_FOLDERS + ("Chameleon",):
        views[f"reptiles-{folder.lower()}"] = data / "reptiles" / folder
    views["pangolins"] = data / "pangolins"
    views["snakes-boxed"] = data / "snakes-boxed"
    return views


def write_mining_pool(shared: Path, work: Path, caps: Caps, seed: int) -> Path:
    """Known-clean images the dataset does not use (museum non-ivory beyond the cap, amphibians
    beyond the cap): where `training mine` looks for the model's false positives."""
    data = shared / "data"
    met = data / "met-ivory"
    used = {p.resolve() for name in ("met-negatives", "amphibians") for p in image_files_under(work / "views" / name)}
    rows = met_rows(shared)
    pool = [met / r["file"] for r in rows if r["class"] == "none" and r["material_note"] == "non-ivory museum object" and not is_painting(r)]
    pool += image_files_under(data / "amphibians")
    view = work / "views" / "mining-pool"
    for f in pool:
        if f.resolve() not in used:
            link_file(view / f.parent.name / f.name, f)
    return view


def tiger_groups(view: Path, out: Path, frames_per_group: int = 40) -> Path:
    """Frames of one video: every `frames_per_group` frames are one group, so that the split is by time."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "group"])
        for p in image_files_under(view / "images"):
            frame = int(re.search(r"(\d+)", p.stem).group(1))
            writer.writerow([p.relative_to(view / "images").as_posix(), f"t{frame // frames_per_group:03d}"])
    return out


def met_groups(shared: Path, out: Path) -> Path:
    """One museum object, one group (some objects have several photographs)."""
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "group"])
        for r in met_rows(shared):
            writer.writerow([Path(r["file"]).name, f"met{r['object_id']}"])
    return out


def box_ivory(view: Path, out: Path) -> AutolabelResult:
    proposals = propose_by_segmentation(image_files_under(view))
    result = AutolabelResult([p for p in proposals if p.boxes], [p for p in proposals if not p.boxes])
    write_export(result, "ivory", out, view)
    contact_sheet(result.accepted, "ivory", out / "contact_ivory.png")
    contact_sheet(result.needs_review, "ivory", out / "contact_ivory_needs_review.png")
    return result


def seed_dataset(work: Path, views: dict[str, Path], ivory_export: Path, shared: Path, extra: dict[str, Path], round_: int) -> Dataset:
    """The boxed sources plus look-alike negatives: what the proposal detector learns from."""
    ds = Dataset(work / f"proposer-data-{round_}")
    if ds.data_yaml.exists() and ds.read_splits()["train"]:
        return ds
    snakes = ClassMapping({"snake": "live_reptile"})
    import_source("yolo", views["tiger-video"], ds, "tiger-video", ClassMapping({"tiger": "tiger_parts"}),
                  group=f"csv:{tiger_groups(views['tiger-video'], work / 'tiger_groups.csv')}", link=True, names={0: "tiger"})
    import_source("yolo", views["snakes-boxed"], ds, "snakes-boxed", snakes, link=True, names={0: "snake"})
    import_source("yolo", ivory_export, ds, "met-ivory", ClassMapping(), group=f"csv:{met_groups(shared, work / 'met_groups.csv')}", link=True)
    import_source("negatives", views["met-negatives"], ds, "met-negatives", ClassMapping(), link=True)
    import_source("negatives", views["caltech-lookalikes"], ds, "caltech-lookalikes", ClassMapping(), group="folder", link=True)
    for name, export in extra.items():
        import_source("yolo", export, ds, name, ClassMapping(), link=True)
    split_dataset(ds, fractions=(0.9, 0.1, 0.0), seed=0)
    return ds


def train_proposer(ds: Dataset, work: Path, base: Path, epochs: int, device: str, round_: int, previous: Path | None) -> Path:
    from training.steps.train import TrainOptions, train

    best = work / f"proposer-{round_}" / "weights" / "best.pt"
    if best.exists():
        return best
    train(TrainOptions(
        data=ds.data_yaml, model=str(previous or base), epochs=epochs, imgsz=320, batch=16, device=device, workers=2,
        freeze=10, project=work, name=f"proposer-{round_}", overrides={"plots": False, "patience": epochs},
    ))
    return best


WILD_JOBS = tuple((f"reptiles-{f.lower()}", "live_reptile") for f in REPTILE_FOLDERS + ("Chameleon",)) + (("pangolins", "pangolin_scales"),)


def salient_seeds(views: dict[str, Path], out: Path, caps: Caps, seed: int) -> dict[str, tuple[Path, dict]]:
    """GrabCut boxes for every photo-in-the-wild source: name -> (YOLO export of a capped sample, all proposals)."""
    seeds = {}
    for name, label in WILD_JOBS:
        target = out / name
        cache = out / f"{name}.proposals.json"
        if cache.exists():
            proposals = [Proposal(Path(p["image"]), [tuple(b) for b in p["boxes"]], p["score"], p["reason"], tuple(p["size"]))
                         for p in json.loads(cache.read_text())]
        else:
            proposals = propose_by_segmentation(image_files_under(views[name]), "salient")
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps([{"image": str(p.image), "boxes": p.boxes, "score": p.score, "reason": p.reason,
                                          "size": list(p.size)} for p in proposals]))
        accepted = [p for p in proposals if p.boxes]
        if name != "pangolins":
            accepted = _sample_proposals(accepted, caps.salient_seeds_per_folder, seed)
        if not (target / "needs_review.txt").exists():
            result = AutolabelResult(accepted, [p for p in proposals if not p.boxes])
            write_export(result, label, target, views[name])
            contact_sheet(result.accepted, label, target / f"contact_{label}.png")
        seeds[name] = (target, {p.image: p for p in proposals})
    return seeds


def propose_folders(
    views: dict[str, Path], proposer: Path, out: Path, device: str, caps: Caps, seed: int, salient: dict[str, dict]
) -> dict[str, Path]:
    """Box each reptile folder and the pangolins; returns source name -> YOLO export of accepted boxes."""
    exports = {}
    for name, label in WILD_JOBS:
        target = out / name
        if not (target / "needs_review.txt").exists():
            # Pangolins: any class, since the proposer has seen few; the salient box must then agree.
            any_class = name == "pangolins"
            proposals = propose_by_detector(image_files_under(views[name]), proposer, label, 1.01 if any_class else 0.5, any_class,
                                            device, second_opinion=salient[name])
            accepted = [p for p in proposals if p.boxes]
            if name.startswith("reptiles-") and name != "reptiles-chameleon":
                keep = {p.image for p in _sample_proposals(accepted, caps.reptiles_per_folder, seed)}
                accepted = [p for p in accepted if p.image in keep]
            result = AutolabelResult(accepted, [p for p in proposals if not p.boxes])
            write_export(result, label, target, views[name])
            contact_sheet(result.accepted, label, target / f"contact_{label}.png")
            if result.needs_review:
                contact_sheet(result.needs_review, label, target / f"contact_{label}_needs_review.png")
        exports[name] = target
    return exports


def _sample_proposals(proposals: list, n: int, seed: int) -> list:
    items = sorted(proposals, key=lambda p: str(p.image))
    random.Random(seed).shuffle(items)
    return items[:n]


def final_dataset(
    out: Path, views: dict[str, Path], ivory_export: Path, proposed: dict[str, Path], shared: Path, work: Path,
    new_sources: Callable[[Dataset], dict[str, str]] | None = None,
) -> tuple[Dataset, dict[str, str]]:
    """Import everything, check --fix, split; returns the dataset and the held-out sources -> split."""
    ds = Dataset(out / "dataset")
    import_source("yolo", views["tiger-video"], ds, "tiger-video", ClassMapping({"tiger": "tiger_parts"}),
                  group=f"csv:{tiger_groups(views['tiger-video'], work / 'tiger_groups.csv')}", link=True, names={0: "tiger"}, image_label="tiger_parts")
    import_source("yolo", views["snakes-boxed"], ds, "snakes-boxed", ClassMapping({"snake": "live_reptile"}), link=True,
                  names={0: "snake"}, image_label="live_reptile")
    import_source("yolo", ivory_export, ds, "met-ivory", ClassMapping(), group=f"csv:{met_groups(shared, work / 'met_groups.csv')}", link=True,
                  image_label="ivory")
    for name, export in proposed.items():
        label = "pangolin_scales" if name == "pangolins" else "live_reptile"
        import_source("yolo", export, ds, name, ClassMapping(), link=True, image_label=label)
    # The held-out reptile folder goes in whole: unboxed images too, with their image-level label only.
    chameleons = [Path(line.split("\t")[0]) for line in (proposed["reptiles-chameleon"] / "needs_review.txt").read_text().splitlines() if line]
    if chameleons:
        unboxed = link_view(chameleons, views["reptiles-chameleon"], work / "views" / "chameleon-unboxed")
        import_source("negatives", unboxed, ds, "reptiles-chameleon", ClassMapping(), link=True, image_label="live_reptile")
    for name in ("met-negatives", "met-bone", "amphibians", "caltech-lookalikes", "misc-products"):
        import_source("negatives", views[name], ds, name, ClassMapping(), group="folder" if name == "caltech-lookalikes" else "file", link=True)
    held = dict.fromkeys(HOLDOUT_SOURCES, "holdout") | (new_sources(ds) if new_sources else {})
    report = check_dataset(ds)
    moved = fix(ds, report)
    split_dataset(ds, seed=0, holdout_sources=tuple(s for s, r in held.items() if r == "holdout"),
                  calibration_sources=tuple(s for s, r in held.items() if r == "calibration"),
                  train_only_sources=(COMPOSITES, *(s for s, r in held.items() if r == "train")))
    (out / "check.json").write_text(json.dumps({"counts": report.counts(), "moved": moved}, indent=2))
    return ds, held


def build(
    shared: Path, out: Path, device: str = "auto", rounds: int = 1, proposer_epochs: int = 6, seed: int = 0, caps: Caps = Caps(),
    proposer: Path | None = None, v2: bool = False, composites: int = 0,
) -> Dataset:
    """`proposer`: an already trained detector to box with (skips stage 4); `v2`: add the listing-style
    sources of `default_v2`; `composites`: how many pasted training images to add (`training composite`)."""
    work = out / "work"
    views = build_views(shared, work, caps, seed)
    ivory_export = work / "autolabel" / "met-ivory"
    if not (ivory_export / "needs_review.txt").exists():
        box_ivory(views["met-ivory"], ivory_export)
    seeds = salient_seeds(views, work / "autolabel" / "salient", caps, seed)
    salient = {name: proposals for name, (_, proposals) in seeds.items()}
    base = shared / "weights" / "yolov5nu-coco.pt"
    # Never learn from the held-out source, not even its rough boxes.
    extra = {name: export for name, (export, _) in seeds.items() if name != "reptiles-chameleon"}
    if proposer is None:
        for round_ in range(1, rounds + 1):
            ds = seed_dataset(work, views, ivory_export, shared, extra, round_)
            proposer = train_proposer(ds, work, base, proposer_epochs if round_ == 1 else max(2, proposer_epochs // 2), device, round_,
                                      proposer)
            proposed = propose_folders(views, proposer, work / "autolabel" / f"round-{round_}", device, caps, seed, salient)
            extra = {k: v for k, v in proposed.items() if k != "reptiles-chameleon"}
    else:
        proposed = propose_folders(views, proposer, work / "autolabel" / f"given-{Path(proposer).stem}", device, caps, seed, salient)
    new_sources = (lambda ds: import_new_sources(ds, shared, work, proposer, device, seed)) if v2 else None
    dataset, held = final_dataset(out, views, ivory_export, proposed, shared, work, new_sources)
    write_mining_pool(shared, work, caps, seed)
    if composites:
        composite_into(dataset, CompositeOptions(count=composites, seed=seed), out / "composites")
    write_build_notes(out, dataset, caps, rounds, proposer, held, composites)
    return dataset


def write_build_notes(out: Path, dataset: Dataset, caps: Caps, rounds: int, proposer: Path, held: dict[str, str], composites: int) -> None:
    meta = dataset.read_meta()
    counts: dict[str, dict[str, int]] = {}
    for split, members in dataset.read_splits().items():
        for p in members:
            row = meta.get(dataset.relative(p))
            source = row.source if row else "?"
            entry = counts.setdefault(source, {})
            entry[split] = entry.get(split, 0) + 1
    lines = [
        "# The default dataset, as built by `python -m training build-default`", "",
        "Choices made on purpose:",
        f"- museum ivory capped at {caps.ivory} objects (of 1,515) and museum non-ivory negatives at {caps.met_negatives}: "
        "one object on a plain background must not become the whole of what ivory means;",
        "- painted miniatures (watercolour on ivory, and the non-ivory ones) left out of both: the ivory is under the paint;",
        f"- tiger video: every {2 * caps.tiger_every_nth_frame}th frame, grouped in 40-frame stretches so that the split is by time;",
        f"- reptiles: at most {caps.reptiles_per_folder} boxed images per folder; Chameleon held out whole (out-of-source check);",
        f"- amphibians capped at {caps.amphibians}, as background images (not reptiles);",
        f"- held out of train/val/test: {', '.join(HOLDOUT_SOURCES)};",
        "- boxes: museum ivory by plain-background segmentation; reptiles and pangolins by a detector trained on the boxed "
        "sources plus GrabCut seeds, a box kept when its class agrees and it is confident or GrabCut agrees with it;",
        f"- proposal detector: {proposer} ({rounds} round(s) when trained here);",
        *(held_out_lines(held) if len(held) > len(HOLDOUT_SOURCES) else []),
        f"- composites (museum ivory pasted onto training-split product photos, training split only): {composites};", "",
        "| source | " + " | ".join(SPLIT_COLUMNS) + " |", "|---|---|---|---|---|---|",
    ]
    for source, entry in sorted(counts.items()):
        lines.append(f"| {source} | " + " | ".join(str(entry.get(s, 0)) for s in SPLIT_COLUMNS) + " |")
    (out / "BUILD.md").write_text("\n".join(lines) + "\n")


def cmd_build_default(args: argparse.Namespace) -> int:
    dataset = build(args.shared, args.out, args.device, args.rounds, args.proposer_epochs, args.seed, proposer=args.proposer,
                    v2=args.v2, composites=args.composites)
    print((args.out / "BUILD.md").read_text())
    print(f"data: {dataset.data_yaml}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-default", help="build the default dataset from ../shared",
                       formatter_class=HelpFormatter)
    p.add_argument("--shared", type=Path, default=Path("../shared"))
    p.add_argument("--out", type=Path, default=Path("data/default"))
    p.add_argument("--device", default="auto")
    p.add_argument("--rounds", type=int, default=1, help="proposal detector rounds (2: retrain on the accepted proposals)")
    p.add_argument("--proposer-epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--proposer", type=Path, help="box with this trained detector (e.g. weights/v1.pt) instead of training one")
    p.add_argument("--v2", action="store_true", help="add products/, reptiles-more/ and wildscan/ with held-out sources (see default_v2)")
    p.add_argument("--composites", type=int, default=0, help="pasted training images to add (see `training composite`)")
    p.set_defaults(handler=cmd_build_default)
