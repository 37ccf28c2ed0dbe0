"""Few-shot linear evaluation (ViT paper §4.1) and a logistic-regression linear probe.

The paper's few-shot accuracy: freeze the model, take its representation (the pre-logits features)
of k images per class, and fit a regularised least-squares map to {−1, 1}^K targets in closed
form; accuracy is measured on a held-out set. Reference setting (as in big_vision's evaluator):
features standardised per dimension with the k-shot set's mean and standard deviation ("whitened"),
a constant bias feature appended (large, so the bias is almost unregularised), L2 regularisation
2^10, shots 1/5/10/25, several seeds, mean ± standard deviation over seeds.

The linear probe (logistic regression on the same standardised features, L-BFGS, full batch) is
the usual comparison and can run on the same k-shot subsets or on the whole training set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SHOTS = (1, 5, 10, 25)
DEFAULT_L2 = 2.0**10
BIAS_VALUE = 100.0  # the constant bias feature; its weight pays λ·(b/100)², i.e. almost no penalty
METHODS = ("ridge", "logreg")


# ----------------------------------------------------------------------------------- features
@torch.no_grad()
def extract_features(model: nn.Module, batches: Iterable[Any], device: torch.device | str | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen representations ``forward_head(forward_features(x), pre_logits=True)`` and labels.

    ``batches`` yields ``(images, labels)`` pairs or dicts with ``"image"`` and ``"target"`` (the
    vitkit data loaders' batches). Returns float32 (N, D) features and int64 (N,) labels on the CPU.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    feats, labels = [], []
    try:
        for batch in batches:
            x, y = (batch["image"], batch["target"]) if isinstance(batch, dict) else batch
            if x.numel() == 0:
                continue
            f = model.forward_head(model.forward_features(x.to(device)), pre_logits=True)
            feats.append(f.float().cpu())
            labels.append(torch.as_tensor(y).long().cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("no images were given: the data yielded no batches")
    return torch.cat(feats), torch.cat(labels)


# ----------------------------------------------------------------------------- closed form
def ridge_solve(x: torch.Tensor, targets: torch.Tensor, l2: float) -> torch.Tensor:
    """argmin_W ‖XW − T‖² + λ‖W‖² in closed form (float64), (N, D), (N, K) → (D, K).

    Primal (XᵀX + λI)⁻¹XᵀT when N ≥ D, dual Xᵀ(XXᵀ + λI)⁻¹T when D > N: the same solution
    through the smaller N×N or D×D system (few-shot sets have N ≪ D).
    """
    if not l2 > 0:
        raise ValueError(f"l2={l2} must be > 0 (the paper uses 2^10 = 1024)")
    x, t = x.double(), targets.double()
    N, D = x.shape
    if N >= D:
        gram = x.T @ x + l2 * torch.eye(D, dtype=x.dtype, device=x.device)  # (D, D)
        return torch.linalg.solve(gram, x.T @ t)
    gram = x @ x.T + l2 * torch.eye(N, dtype=x.dtype, device=x.device)  # (N, N)
    return x.T @ torch.linalg.solve(gram, t)


@dataclass
class LinearClassifier:
    """Standardisation (from the training features) followed by a linear map; ``predict`` → labels."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(self.weight.dtype) - self.mean) / self.std
        return z @ self.weight + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).argmax(dim=-1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return (self.predict(x) == y.to(self.weight.device)).double().mean().item()


def _standardise(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = x.double()
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False) + eps
    return (x - mean) / std, mean, std


def fit_ridge(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = DEFAULT_L2,
              bias_value: float = BIAS_VALUE) -> LinearClassifier:
    """The paper's few-shot classifier: whitened features plus a constant bias feature, regularised
    least squares to ±1 one-hot targets (ViT §4.1)."""
    z, mean, std = _standardise(x)
    z = torch.cat([z, torch.full_like(z[:, :1], bias_value)], dim=1)  # (N, D+1)
    targets = 2.0 * F.one_hot(y.long(), num_classes).double() - 1.0  # (N, K) in {−1, 1}
    w = ridge_solve(z, targets, l2)  # (D+1, K)
    return LinearClassifier(mean, std, w[:-1], w[-1] * bias_value)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = 1e-3,
                 max_iter: int = 200) -> LinearClassifier:
    """Multinomial logistic regression on standardised features: mean cross-entropy + (l2/2)‖W‖²
    (bias unpenalised), minimised by L-BFGS with a strong-Wolfe line search (float64, full batch)."""
    if l2 < 0:
        raise ValueError(f"l2={l2} must be >= 0")
    z, mean, std = _standardise(x)
    y = y.long()
    w = torch.zeros(z.shape[1], num_classes, dtype=z.dtype, requires_grad=True)
    b = torch.zeros(num_classes, dtype=z.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearClassifier(mean, std, w.detach(), b.detach())


# ------------------------------------------------------------------------------- evaluation
def sample_shots(labels: torch.Tensor, shots: int, seed: int, num_classes: int | None = None) -> torch.Tensor:
    """Indices of ``shots`` examples of every class, drawn without replacement with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    K = num_classes if num_classes is not None else int(labels.max()) + 1
    picked = []
    for c in range(K):
        idx = (labels == c).nonzero().flatten()
        if len(idx) < shots:
            raise ValueError(f"class {c} has {len(idx)} training examples, fewer than shots={shots}; "
                             "lower --shots or use more training data")
        picked.append(idx[torch.randperm(len(idx), generator=g)[:shots]])
    return torch.cat(picked)


@dataclass
class FewShotResult:
    """Test accuracy (fraction 0–1) per number of shots and seed, for one method."""

    method: str
    l2: float
    accuracy: dict[int, list[float]] = field(default_factory=dict)

    def mean(self, shots: int) -> float:
        return sum(self.accuracy[shots]) / len(self.accuracy[shots])

    def std(self, shots: int) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        a = self.accuracy[shots]
        if len(a) < 2:
            return 0.0
        m = self.mean(shots)
        return math.sqrt(sum((v - m) ** 2 for v in a) / (len(a) - 1))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "l2": self.l2,
                "shots": {str(k): {"mean": self.mean(k), "std": self.std(k), "per_seed": v}
                          for k, v in self.accuracy.items()}}


def fewshot_evaluate(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    shots: Sequence[int] = DEFAULT_SHOTS,
    seeds: int | Sequence[int] = 5,
    l2: float | None = None,
    method: str = "ridge",
    num_classes: int | None = None,
) -> FewShotResult:
    """k-shot accuracy on ``test`` of a linear classifier fitted to k examples per class drawn
    from ``train`` (features from :func:`extract_features`), for every k and seed.

    ``method`` ``"ridge"`` is the paper's closed form (``l2`` default 2^10); ``"logreg"`` is the
    logistic probe (``l2`` default 1e-3). ``seeds``: a count (0…n−1) or explicit seeds.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; choose one of {METHODS}")
    K = num_classes if num_classes is not None else int(max(train_y.max(), test_y.max())) + 1
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ValueError("seeds must be a positive count or a non-empty list")
    reg = l2 if l2 is not None else (DEFAULT_L2 if method == "ridge" else 1e-3)
    result = FewShotResult(method, reg)
    for k in shots:
        if k < 1:
            raise ValueError(f"shots must be positive, got {k}")
        for seed in seeds:
            idx = sample_shots(train_y, k, seed, K)
            fit = fit_ridge if method == "ridge" else fit_logistic
            clf = fit(train_x[idx], train_y[idx], K, reg)
            result.accuracy.setdefault(k, []).append(clf.accuracy(test_x, test_y))
    return result


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                 l2: float = 1e-4, max_iter: int = 500, num_classes: int | None = None) -> float:
    """Test accuracy of a logistic-regression probe fitted to all of ``train``."""
    K = num_classes if num_classes is not None else int(max(train_y.max(), test_y.max())) + 1
    return fit_logistic(train_x, train_y, K, l2, max_iter).accuracy(test_x, test_y)


def format_results(results: Sequence[FewShotResult], probe: float | None = None) -> str:
    """A plain-text table: one row per shot count, one column per method, mean ± std in %."""
    shots = sorted({k for r in results for k in r.accuracy})
    head = "shots | " + " | ".join(f"{r.method} (l2={r.l2:g})" for r in results)
    lines = [head, "-" * len(head)]
    for k in shots:
        cells = [f"{100 * r.mean(k):5.1f} ± {100 * r.std(k):4.1f}" if k in r.accuracy else "-" for r in results]
        lines.append(f"{k:5d} | " + " | ".join(cells))
    if probe is not None:
        lines.append(f"linear probe (logistic regression, all training images): {100 * probe:.1f}%")
    return "\n".join(lines)
