"""Beat-level quality: scoring detections against reference annotations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DetectionScore", "score_detections"]


@dataclass(frozen=True)
class DetectionScore:
    """Beat-by-beat agreement of detections with a reference (ANSI/AAMI EC57 style)."""

    true_positives: int
    false_negatives: int
    false_positives: int

    @property
    def sensitivity(self) -> float:
        """Se = TP / (TP + FN)."""
        d = self.true_positives + self.false_negatives
        return self.true_positives / d if d else float("nan")

    @property
    def positive_predictivity(self) -> float:
        """+P = TP / (TP + FP)."""
        d = self.true_positives + self.false_positives
        return self.true_positives / d if d else float("nan")

    def __add__(self, other: DetectionScore) -> DetectionScore:
        return DetectionScore(
            self.true_positives + other.true_positives,
            self.false_negatives + other.false_negatives,
            self.false_positives + other.false_positives,
        )

    def __repr__(self) -> str:
        return (
            f"DetectionScore(Se={self.sensitivity:.4%}, +P={self.positive_predictivity:.4%}, "
            f"TP={self.true_positives}, FN={self.false_negatives}, FP={self.false_positives})"
        )


def score_detections(reference, detected, tolerance) -> DetectionScore:
    """Match detections to reference beats one-to-one within a tolerance.

    Parameters
    ----------
    reference, detected : array-like of int
        Sample indices (sorted).
    tolerance : int
        Largest |detected - reference| (samples) that counts as a match (EC57: 150 ms).

    Returns
    -------
    DetectionScore
    """
    ref = np.asarray(reference, dtype=np.int64)
    det = np.asarray(detected, dtype=np.int64)
    if ref.size == 0 or det.size == 0:
        return DetectionScore(0, int(ref.size), int(det.size))
    # each reference beat takes the nearest detection; a detection matched twice
    # counts once (the closer reference keeps it)
    k = np.clip(np.searchsorted(det, ref), 1, det.size - 1)
    left, right = det[k - 1], det[k]
    nearest = np.where(np.abs(ref - left) <= np.abs(right - ref), k - 1, k)
    nearest = np.where(det.size == 1, 0, nearest)
    dist = np.abs(det[nearest] - ref)
    ok = dist <= tolerance
    order = np.lexsort((dist, nearest))
    taken = np.zeros(det.size, dtype=bool)
    matched = np.zeros(ref.size, dtype=bool)
    for i in order[ok[order]]:  # per matched beat, not per sample
        j = nearest[i]
        if not taken[j]:
            taken[j] = True
            matched[i] = True
    tp = int(matched.sum())
    return DetectionScore(tp, int(ref.size - tp), int(det.size - tp))
