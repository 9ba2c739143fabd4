"""v3's roles for the image-level head: which photos train, calibrate, or are held out, by whole groups.

The head learns from every image-level label of ../shared (training/imagelevel/sources.py), so
the roles are set per *group* (a repository, a shop, a museum department, a kind of animal, a
seizure series), never per photo: a held-out photo's neighbours must not be trained on.

For the sources v2 used, v2's choices are kept exactly (so v2 and v3 are compared on the same
held-out photos): products/ and reptiles-more/ by `default_v2.PRODUCT_ROLES` / `REPTILE_ROLES`,
wildscan/ by `default_v2.wildscan_rows(shared, seed)` (seed 0, build-default's default),
reptiles/Chameleon, met-ivory's bone and horn look-alikes ("met-bone") and negatives/misc held out
whole (`build_default.HOLDOUT_SOURCES`). Everything else v2 split at random into train/val/test
(met-ivory, amphibians, caltech, pangolins, snakes-boxed, tiger-video): v3 holds out whole groups
of those, written down below; v2 may have trained on some of those photos, so v2's numbers on them
are optimistic, and the evaluation says so.

Near duplicates (pHash within 6 bits) must not straddle roles: a photo of train or calibration
with a near twin in a more held-out role is dropped (`dropped`), so held-out photos stay exactly
the ones their groups name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from training.imagelevel.sources import LabelledImage
from training.recipes.default_v2 import PRODUCT_ROLES, REPTILE_ROLES, repository_of, wildscan_rows

ROLES = ("train", "calibration", "holdout")
DROPPED = "dropped"
SEED = 0
"""build-default's default seed: wildscan's groups fall where v2's did."""

# met-ivory/ by museum department (ivory and non-ivory objects together); bone and horn look-alikes
# are held out whatever their department (v2's "met-bone"). Holdout ~25% of the photos, with
# departments of unlike objects (Islamic and Egyptian inlays, instruments, Oceanic and African art);
# calibration ~15%; the big departments train.
MET_ROLES = {
    "Islamic Art": "holdout", "Egyptian Art": "holdout", "Musical Instruments": "holdout",
    "The Michael C. Rockefeller Wing": "holdout",
    "Medieval Art": "calibration", "The American Wing": "calibration", "Arms and Armor": "calibration",
}
MET_LOOKALIKES = ("bone look-alike", "horn/tooth look-alike")
# animals/ by (repository, kind): pets and spotted big cats held out, as the targets name them.
ANIMAL_ROLES = {
    "edwin24p/animal/big_cat": "holdout", "edwin24p/animal/bird": "holdout", "edwin24p/animal/cat": "holdout",
    "kovacspeter/animal/dog": "holdout", "kovacspeter/animal/seal": "holdout",
    "edwin24p/animal/bear": "calibration", "kovacspeter/animal/primate": "calibration",
    "edwin24p/animal/octopus": "calibration",
}
# negatives/caltech by category: a carving, a pet, a spotted cat and a fossil held out; a vessel,
# a cartoon and a big cat's face for calibration. negatives/misc is v2's held-out "misc-products".
CALTECH_ROLES = {
    "Leopards": "holdout", "buddha": "holdout", "dalmatian": "holdout", "trilobite": "holdout",
    "cougar_face": "calibration", "ewer": "calibration", "snoopy": "calibration",
}
# amphibians/: the closest look-alike of a lizard is held out; toads calibrate; frogs train.
AMPHIBIAN_ROLES = {"Salamander": "holdout", "Toad": "calibration"}
# pangolins/: 35 photos from 23 repositories; about a third of the repositories held out, seeded.
PANGOLIN_HOLDOUT_SHARE = 1 / 3
# reptiles/: one web collection; v2 held out its Chameleon folder ("reptiles-chameleon").
REPTILE_FOLDER_ROLES = {"Chameleon": "holdout"}
# tiger-video/ (one video: near-duplicate frames) and snakes-boxed/ (one scrape) train whole.

HEAD_NEVER_FLAGS = ("ivory",)
"""Classes the head alone never flags, whatever calibration precision says: ivory's look-alikes
(museum bone and horn carvings) are all held out (v2's met-bone), so the calibration photos hold
none, and a precision measured without them says nothing about a bone carving. Ivory still
reaches REVIEW from the head, and FLAG from the detector."""


def pangolin_roles(groups: Sequence[str], seed: int = SEED) -> dict[str, str]:
    """About a third of the repositories (not photos) held out, chosen by a seeded shuffle."""
    order = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    count = round(len(order) * PANGOLIN_HOLDOUT_SHARE)
    return {g: ("holdout" if i < count else "train") for i, g in enumerate(order)}


def assign_roles(rows: Sequence[LabelledImage], shared: Path, seed: int = SEED) \
        -> tuple[list[LabelledImage], list[str]]:
    """One role per row (train, calibration or holdout), set per group; see the module docstring.

    Returns the rows too, each with the group its role was set by: for wildscan the one v2 used (a
    seizure series for product photos, a species otherwise), met-ivory's look-alikes as one group
    (v2's met-bone), animals by repository and kind; so "one role per group" holds and is checked."""
    wildscan = {row["file"]: (row["role"], row["group"]) for row in wildscan_rows(shared, seed)} \
        if (shared / "data" / "wildscan" / "labels.csv").exists() else {}
    pangolins = pangolin_roles([r.group for r in rows if r.source == "pangolins"], seed)
    out_rows, roles = [], []
    for r in rows:
        if r.source == "wildscan":
            key = _wildscan_key(r.path)
            if key not in wildscan:
                raise KeyError(f"{r.path}: not in wildscan/labels.csv, where the wildscan roles come from")
            role, group = wildscan[key]
            out_rows.append(replace(r, group=f"wildscan/{group}"))
            roles.append(role)
        else:
            out_rows.append(replace(r, group=_role_group(r)))
            roles.append(_role(r, pangolins))
    return out_rows, roles


def _role_group(r: LabelledImage) -> str:
    """The group a role is set for, where it is finer than sources.py's (or cuts across it)."""
    if r.source == "met-ivory" and r.kind in MET_LOOKALIKES:
        return "met-ivory/look-alikes"  # v2's met-bone
    if r.source == "animals":
        return f"{r.group}/{r.kind}"
    return r.group


def _wildscan_key(path: Path) -> str:
    """labels.csv's `file`: the path below the wildscan folder."""
    parts = path.parts
    return Path(*parts[len(parts) - 1 - parts[::-1].index("wildscan") + 1:]).as_posix()


def _role(r: LabelledImage, pangolins: Mapping[str, str]) -> str:
    sub = r.group.split("/", 1)[1] if "/" in r.group else ""
    if r.source == "products":
        return PRODUCT_ROLES.get(repository_of(r.path), "train")
    if r.source == "reptiles-more":
        return REPTILE_ROLES.get(repository_of(r.path), "train")
    if r.source == "reptiles":
        return REPTILE_FOLDER_ROLES.get(sub, "train")
    if r.source == "met-ivory":
        return "holdout" if r.kind in MET_LOOKALIKES else MET_ROLES.get(sub, "train")
    if r.source == "negatives":
        if sub.startswith("misc"):
            return "holdout"
        return CALTECH_ROLES.get(sub.split("/", 1)[1] if sub.startswith("caltech/") else sub, "train")
    if r.source == "amphibians":
        return AMPHIBIAN_ROLES.get(sub, "train")
    if r.source == "animals":
        return ANIMAL_ROLES.get(f"{sub}/{r.kind}", "train")
    if r.source == "pangolins":
        return pangolins[r.group]
    return "train"  # tiger-video, snakes-boxed, and any new folder until it is written down here


def drop_near_duplicates(roles: Sequence[str], hashes: np.ndarray, max_distance: int = 6) -> tuple[list[str], int]:
    """A train (calibration) photo with a near twin in calibration or holdout (holdout) becomes `dropped`."""
    from training.phash import near_duplicate_pairs

    rank = {"train": 0, "calibration": 1, "holdout": 2, DROPPED: -1}
    out = list(roles)
    for i, j, _ in near_duplicate_pairs(np.asarray(hashes, dtype=np.uint64), max_distance):
        if rank[roles[i]] != rank[roles[j]] and min(rank[roles[i]], rank[roles[j]]) >= 0:
            out[i if rank[roles[i]] < rank[roles[j]] else j] = DROPPED
    return out, sum(1 for a, b in zip(roles, out) if a != b)


def groups_by_role(rows: Sequence[LabelledImage], roles: Sequence[str]) -> dict[str, set[str]]:
    """group -> the roles its photos got (a check: outside `dropped`, one role per group)."""
    out: dict[str, set[str]] = {}
    for r, role in zip(rows, roles):
        if role != DROPPED:
            out.setdefault(r.group, set()).add(role)
    return out


def role_counts(rows: Sequence[LabelledImage], roles: Sequence[str]) -> Counter:
    """(role, source, class) -> images; class is a taxonomy label, or `background`."""
    return Counter((role, r.source, r.labels[0] if r.labels else "background") for r, role in zip(rows, roles))


def role_table(rows: Sequence[LabelledImage], roles: Sequence[str]) -> str:
    """Markdown: images per source x class, one column per role."""
    counts = role_counts(rows, roles)
    keys = sorted({(s, c) for _, s, c in counts})
    cols = [*ROLES, DROPPED]
    lines = ["| source | class | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for s, c in keys:
        lines.append(f"| {s} | {c} | " + " | ".join(str(counts.get((role, s, c), 0)) for role in cols) + " |")
    totals = Counter(roles)
    lines.append("| **all** | | " + " | ".join(f"**{totals.get(role, 0)}**" for role in cols) + " |")
    return "\n".join(lines)
