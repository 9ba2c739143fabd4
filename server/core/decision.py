"""One image's answer from its raw detections and image-level scores: the classes screened, the
verdict, what is listed.

The server (`server.core.screening`) and the batch backfill (`server.backfill`) both decide with
`DecisionRule`, so a backfill row says what the server would have answered for the same image.
The verdict itself is `server.core.policy`'s rule; this adds the floors around it: the model's
NMS keeps every detection that could reach a review threshold, the listing keeps those above the
caller's (or the model's default) minimum confidence.

With an image-level head (model v3 and later) the verdict is the stronger of the detector's and
the head's, each under its own calibrated thresholds: image-level evidence alone reaches REVIEW,
and FLAG needs the detector or a head class whose calibrated precision supports a flag threshold
(a class without one never flags from the head alone).

A photo that matches a hash bank (a copy of a confirmed photo) raises the verdict to the bank's
action, whatever the models say: that is what the banks are for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.core.detections import Detections
from server.core.imagehead import ImageScores, head_verdict
from server.core.manifest import ModelManifest
from server.core.matching import FLAG, Match
from server.core.policy import ClassPolicy, Verdict, decide, verdicts_for
from server.core.taxonomy import by_label


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    detections: Detections
    """The listed detections: above the listing floor, at most max_detections."""
    detection_verdicts: np.ndarray
    """`Verdict` numbers, one per listed detection."""
    deciding_class: int | None
    """The class behind a REVIEW or FLAG (of the strongest detection, or the head's); None for CLEAR."""
    image_scores: ImageScores | None = None
    """The head's scores, of the screened classes only; None for a detector-only model."""
    image_verdicts: np.ndarray | None = None
    """`Verdict` numbers, one per entry of `image_scores`."""
    decided_by: str = ""
    """"known image", "detector" or "image-level head" for REVIEW and FLAG (in that order when several
    call for the same verdict); "" for CLEAR."""
    matches: tuple[Match, ...] = ()
    """The banked photos this image is a copy of, nearest first."""


@dataclass(frozen=True)
class DecisionRule:
    policies: dict[int, ClassPolicy]
    screened: tuple[ClassPolicy, ...]
    """The thresholds that produce the answer: the classes asked for (all by default)."""
    class_ids: frozenset[int] | None
    listed_min: float
    max_detections: int
    head_policies: dict[int, ClassPolicy] | None = None
    """The image-level head's thresholds (None: no head)."""

    @classmethod
    def of(cls, manifest: ModelManifest, class_ids: frozenset[int] | None, min_confidence: float,
           max_detections: int) -> DecisionRule:
        """`min_confidence` 0 means the model's default."""
        screened = tuple(p for p in manifest.classes if class_ids is None or p.id in class_ids)
        head = manifest.head_spec
        return cls(manifest.policies, screened, class_ids, min_confidence or manifest.default_min_confidence, max_detections,
                   head.policies if head else None)

    @property
    def screened_by_head(self) -> tuple[ClassPolicy, ...]:
        """The head's thresholds of the screened classes (empty without a head)."""
        if self.head_policies is None:
            return ()
        return tuple(p for p in self.head_policies.values() if self.class_ids is None or p.id in self.class_ids)

    @property
    def nms_confidence(self) -> float:
        """The engine's confidence floor: low enough for the listing and for every review threshold."""
        return min([self.listed_min] + [p.review_threshold for p in self.screened])

    def decide(self, raw: Detections, image_scores: ImageScores | None = None, matches: tuple[Match, ...] = ()) -> Decision:
        candidates = raw.of_classes(self.class_ids)
        candidate_verdicts = verdicts_for(self.policies, candidates.class_id, candidates.confidence)
        verdict = decide(candidate_verdicts)
        deciding = next((int(c) for c, v in zip(candidates.class_id, candidate_verdicts) if v == verdict), None)
        decided_by = "detector"
        listed = candidates.above(self.listed_min)[: self.max_detections]
        scores, score_verdicts = None, None
        if image_scores is not None and self.head_policies is not None:
            head, head_class = head_verdict(image_scores, self.head_policies, self.class_ids)
            if head > verdict:
                verdict, deciding, decided_by = head, head_class, "image-level head"
            keep = np.array([self.class_ids is None or int(c) in self.class_ids for c in image_scores.class_ids], bool)
            wanted = set(int(c) for c in image_scores.class_ids[keep])
            scores = ImageScores(image_scores.class_ids[keep], image_scores.scores[keep],
                                 {c: b for c, b in image_scores.heat_boxes.items() if c in wanted},
                                 {c: m for c, m in image_scores.heat_maps.items() if c in wanted})
            score_verdicts = scores.verdicts(self.head_policies)
        if matches:
            banked = max(Verdict.FLAG if m.action == FLAG else Verdict.REVIEW for m in matches)
            if banked >= verdict:
                verdict, decided_by = banked, "known image"
                deciding = deciding if deciding is not None else by_label_or_none(matches[0].label)
        cleared = verdict == Verdict.CLEAR
        return Decision(verdict, listed, verdicts_for(self.policies, listed.class_id, listed.confidence),
                        None if cleared else deciding, scores, score_verdicts, "" if cleared else decided_by,
                        tuple(matches))


def by_label_or_none(label: str) -> int | None:
    """The taxonomy id of a bank entry's label; None for "known_trafficking_image" and the like."""
    try:
        return by_label(label).id
    except KeyError:
        return None
