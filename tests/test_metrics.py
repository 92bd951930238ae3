"""Our metrics against well-kept implementations: SSIM (scikit-image), ROC AUC (scikit-learn), calibration
error (torchmetrics) and the bootstrap CI (SciPy); and PSNR from the mean MSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import bootstrap
from skimage.metrics import structural_similarity
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import binary_calibration_error

from genie_env.metrics import FrameErrors, bootstrap_ci, expected_calibration_error, psnr_from_mse, roc_auc, ssim


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.random((3, 64, 64, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ours = ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float()).numpy()
    theirs = [
        structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
                              channel_axis=-1)
        for x, y in zip(a, b)
    ]  # fmt: skip
    assert np.allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_matches_scikit_learn(ties):
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.1
    scores = rng.random(500) + labels * 0.3
    if ties:
        scores = np.round(scores, 1)  # many equal scores across both classes
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(roc_auc(scores, np.zeros(500, bool)))


def test_calibration_error_matches_torchmetrics():
    rng = np.random.default_rng(2)
    probs = rng.random(2000)
    labels = rng.random(2000) < probs**2  # miscalibrated on purpose
    theirs = binary_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels).long(), n_bins=10, norm="l1")
    assert expected_calibration_error(probs, labels) == pytest.approx(float(theirs), abs=1e-6)
    assert expected_calibration_error(np.full(100, 0.3), np.r_[np.ones(30), np.zeros(70)].astype(bool)) < 1e-12


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(3)
    returns = rng.choice([0.0, 10.0], 500, p=[0.45, 0.55])  # CoinRun returns: 0 or 10
    ours = bootstrap_ci(returns, 0.95, resamples=20_000)
    res = bootstrap((returns,), np.mean, confidence_level=0.95, n_resamples=20_000, method="percentile", random_state=0)
    theirs = (res.confidence_interval.low, res.confidence_interval.high)
    assert ours == pytest.approx(theirs, abs=0.1)  # two Monte Carlo estimates of the same interval
    assert ours[0] < returns.mean() < ours[1]


def test_psnr_comes_from_the_mean_mse_over_all_frames():
    target = torch.zeros(2, 16, 16, 3)
    pred = torch.stack([torch.zeros(16, 16, 3), torch.full((16, 16, 3), 0.1)])  # one exact frame, one off by 0.1
    errors = FrameErrors()
    errors.update(pred, target)
    assert errors.mse == pytest.approx(0.005)
    assert errors.psnr == pytest.approx(psnr_from_mse(0.005)) and np.isfinite(errors.psnr)
