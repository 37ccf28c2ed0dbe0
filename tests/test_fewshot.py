"""Few-shot linear evaluation (ViT §4.1) and the logistic probe."""
from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.evaluate.fewshot import (
    BIAS_VALUE,
    extract_features,
    fewshot_evaluate,
    fit_logistic,
    fit_ridge,
    format_results,
    linear_probe,
    ridge_solve,
    sample_shots,
)


def _lstsq_ridge(x: torch.Tensor, t: torch.Tensor, l2: float) -> torch.Tensor:
    """min ‖XW − T‖² + λ‖W‖² as one least-squares problem: [X; √λ I] W ≈ [T; 0]."""
    D = x.shape[1]
    a = torch.cat([x, l2**0.5 * torch.eye(D, dtype=x.dtype)])
    b = torch.cat([t, torch.zeros(D, t.shape[1], dtype=t.dtype)])
    return torch.linalg.lstsq(a, b, driver="gelsd").solution


@pytest.mark.parametrize("n, d", [(40, 7), (6, 30)])  # primal (N ≥ D) and dual (D > N) branches
def test_closed_form_equals_lstsq(n, d):
    x = torch.randn(n, d, dtype=torch.float64)
    t = 2.0 * F.one_hot(torch.randint(0, 4, (n,)), 4).double() - 1
    for l2 in (0.5, 1024.0):
        torch.testing.assert_close(ridge_solve(x, t, l2), _lstsq_ridge(x, t, l2), atol=1e-10, rtol=1e-8)


def test_fit_ridge_whitens_adds_a_bias_feature_and_fits_pm1_targets():
    x = torch.randn(30, 5) * torch.tensor([1.0, 10, 0.1, 3, 1]) + 4
    y = torch.arange(30) % 3
    clf = fit_ridge(x, y, 3, l2=8.0)
    z = (x.double() - x.double().mean(0)) / (x.double().std(0, unbiased=False) + 1e-5)
    z = torch.cat([z, torch.full((30, 1), BIAS_VALUE, dtype=torch.float64)], 1)
    w = _lstsq_ridge(z, 2.0 * F.one_hot(y, 3).double() - 1, 8.0)
    torch.testing.assert_close(clf.scores(x), z @ w, atol=1e-8, rtol=1e-8)


def _blobs(n_per_class: int, k: int = 4, d: int = 16, seed: int = 0):
    """Gaussian classes around fixed centres (the same for every seed)."""
    centres = 3 * torch.randn(k, d, generator=torch.Generator().manual_seed(1234))
    y = torch.arange(k).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), d, generator=torch.Generator().manual_seed(seed)), y


def test_sample_shots_draws_k_distinct_per_class_by_seed():
    y = torch.arange(50) % 5
    a, b, c = sample_shots(y, 3, 0), sample_shots(y, 3, 0), sample_shots(y, 3, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.tolist())) == 15 and torch.bincount(y[a]).tolist() == [3] * 5
    with pytest.raises(ValueError, match="fewer than shots"):
        sample_shots(y, 11, 0)


def test_fewshot_evaluate_reports_mean_and_std_over_seeds():
    tx, ty = _blobs(30)
    vx, vy = _blobs(20, seed=1)
    res = fewshot_evaluate(tx, ty, vx, vy, shots=(1, 5), seeds=3)
    assert set(res.accuracy) == {1, 5} and all(len(v) == 3 for v in res.accuracy.values())
    assert res.mean(5) > 0.9  # well-separated classes
    assert res.std(5) == pytest.approx(statistics.stdev(res.accuracy[5]))
    log = fewshot_evaluate(tx, ty, vx, vy, shots=(5,), seeds=[7], method="logreg")
    assert log.mean(5) > 0.9 and log.std(5) == 0.0
    text = format_results([res, log], probe=linear_probe(tx, ty, vx, vy))
    assert "ridge (l2=1024)" in text and "linear probe" in text
    with pytest.raises(ValueError, match="method"):
        fewshot_evaluate(tx, ty, vx, vy, method="svm")


def test_logistic_fit_reaches_a_stationary_point():
    x, y = _blobs(10, d=6)
    x = x + 2 * torch.randn(x.shape)  # overlapping classes: a finite optimum
    l2 = 1e-2
    clf = fit_logistic(x, y, 4, l2=l2)
    z = ((x.double() - clf.mean) / clf.std)
    w, b = clf.weight.clone().requires_grad_(), clf.bias.clone().requires_grad_()
    loss = F.cross_entropy(z @ w + b, y) + 0.5 * l2 * (w * w).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-6 and gb.abs().max() < 1e-6


def test_extract_features_are_the_pre_logits_the_head_reads():
    model = vitkit.create_model("vit_micro_patch4_28").eval()
    x, y = torch.randn(5, 1, 28, 28), torch.arange(5)
    feats, labels = extract_features(model, [(x[:3], y[:3]), {"image": x[3:], "target": y[3:]}])
    assert feats.shape == (5, 64) and torch.equal(labels, y)
    with torch.no_grad():
        torch.testing.assert_close(model.head(feats), model(x), atol=1e-5, rtol=1e-5)
