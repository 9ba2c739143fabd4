"""The image-level head: one logistic regression per class over pooled backbone features.

Linear on purpose: it fits in seconds on a CPU from cached features, its class activation map on
the backbone's last feature map is nearly free at serving time, and with a few hundred photos per
class a deeper head would learn the sources rather than the classes. Multi-label: one sigmoid per
class, background is the absence of all of them; every image without a class (other animals,
pets, amphibians, look-alike carvings, leather, museum objects, products) is that class's negative.

The fit standardises the features, so one L2 strength suits every backbone, then folds the
standardisation into the weights: the served head is `sigmoid(x @ weight.T + bias)` on raw
pooled features, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LinearHead:
    weight: np.ndarray
    """(K, D) float32, on raw (not standardised) pooled features."""
    bias: np.ndarray
    """(K,) float32."""

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32) @ self.weight.T + self.bias

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(N, K) sigmoid scores."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(x), -60, 60)))


def class_balanced_weights(y: np.ndarray) -> np.ndarray:
    """(N, K) per-image, per-class weights: a class's positives and negatives weigh half each.

    Without it, a class with 30 positives among 5,000 photos is fitted as "never"; with it, the
    threshold is left to calibration, where the review budget decides it."""
    pos = y.sum(0).clip(min=1)
    neg = (1 - y).sum(0).clip(min=1)
    n = len(y)
    return np.where(y > 0, n / (2 * pos), n / (2 * neg)).astype(np.float32)


def fit_head(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, max_iter: int = 300, seed: int = 0,
             sample_weight: np.ndarray | None = None) -> LinearHead:
    """Weighted BCE + L2 (on the standardised weights) by full-batch L-BFGS, deterministic for a seed.

    `sample_weight` (N,) multiplies the class-balanced weights (e.g. to even out sources)."""
    if len(x) == 0:
        raise ValueError("no training images: is the feature cache empty, or every image in another role?")
    missing = np.flatnonzero(y.sum(0) == 0)
    if len(missing):
        raise ValueError(f"classes {missing.tolist()} have no positive training image: the head cannot learn them")
    torch.manual_seed(seed)
    x64 = x.astype(np.float64)
    mean, std = x64.mean(0), x64.std(0) + 1e-6
    z = torch.from_numpy(((x64 - mean) / std).astype(np.float32))
    target = torch.from_numpy(y.astype(np.float32))
    weights = class_balanced_weights(y)
    if sample_weight is not None:
        weights = weights * (sample_weight / sample_weight.mean())[:, None].astype(np.float32)
    w = torch.from_numpy(weights)
    k, d = y.shape[1], x.shape[1]
    weight = torch.zeros(k, d, requires_grad=True)
    prior = np.log(y.mean(0).clip(1e-4, 1 - 1e-4) / (1 - y.mean(0).clip(1e-4, 1 - 1e-4)))
    bias = torch.tensor(prior * 0, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        logits = z @ weight.T + bias
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).mean()
        loss = loss + l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    w_std = weight.detach().double().numpy()
    raw_weight = w_std / std[None, :]
    raw_bias = bias.detach().double().numpy() - raw_weight @ mean
    return LinearHead(raw_weight.astype(np.float32), raw_bias.astype(np.float32))
