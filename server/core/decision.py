"""One image's answer from its raw detections: the classes screened, the verdict, what is listed.

The server (`server.core.screening`) and the batch backfill (`server.batch`) both decide with
`DecisionRule`, so a backfill row says what the server would have answered for the same image.
The verdict itself is `server.core.policy`'s rule; this adds the floors around it: the model's
NMS keeps every detection that could reach a review threshold, the listing keeps those above the
caller's (or the model's default) minimum confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.core.detections import Detections
from server.core.manifest import ModelManifest
from server.core.policy import ClassPolicy, Verdict, decide, verdicts_for


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    detections: Detections
    """The listed detections: above the listing floor, at most max_detections."""
    detection_verdicts: np.ndarray
    """`Verdict` numbers, one per listed detection."""
    deciding_class: int | None
    """The class of the strongest detection behind a REVIEW or FLAG; None for CLEAR."""


@dataclass(frozen=True)
class DecisionRule:
    policies: dict[int, ClassPolicy]
    screened: tuple[ClassPolicy, ...]
    """The thresholds that produce the answer: the classes asked for (all by default)."""
    class_ids: frozenset[int] | None
    listed_min: float
    max_detections: int

    @classmethod
    def of(cls, manifest: ModelManifest, class_ids: frozenset[int] | None, min_confidence: float,
           max_detections: int) -> DecisionRule:
        """`min_confidence` 0 means the model's default."""
        screened = tuple(p for p in manifest.classes if class_ids is None or p.id in class_ids)
        return cls(manifest.policies, screened, class_ids, min_confidence or manifest.default_min_confidence, max_detections)

    @property
    def nms_confidence(self) -> float:
        """The engine's confidence floor: low enough for the listing and for every review threshold."""
        return min([self.listed_min] + [p.review_threshold for p in self.screened])

    def decide(self, raw: Detections) -> Decision:
        candidates = raw.of_classes(self.class_ids)
        candidate_verdicts = verdicts_for(self.policies, candidates.class_id, candidates.confidence)
        verdict = decide(candidate_verdicts)
        deciding = next((int(c) for c, v in zip(candidates.class_id, candidate_verdicts) if v == verdict), None)
        listed = candidates.above(self.listed_min)[: self.max_detections]
        return Decision(verdict, listed, verdicts_for(self.policies, listed.class_id, listed.confidence),
                        deciding if verdict != Verdict.CLEAR else None)
