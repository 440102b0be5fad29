"""Assertions for statistical tests, with tolerances in standard errors of the estimator's own samples."""
from __future__ import annotations

import torch

# With ~100 coordinates checked across the suite, |Z| > 5 has probability ~6e-7 per coordinate under a
# correct estimator: a failure means the math is wrong, not bad luck (and seeds are fixed anyway).
Z_TOL = 5.0


def assert_mean_matches(result, reference: torch.Tensor, *, z_tol: float = Z_TOL, max_rel_se: float = 0.05):
    """The mean of the estimates equals ``reference`` within ``z_tol`` standard errors, and the test has
    power: the standard error is small against the gradient's scale."""
    reference = reference.reshape(-1).to(torch.float64)
    se = result.bias_se
    scale = max(1.0, float(reference.abs().max()))
    assert float(se.max()) < max_rel_se * scale, (
        f"too few estimates for a meaningful test: max SE {float(se.max()):.3g} vs scale {scale:.3g}"
    )
    z = (result.mean - reference).abs() / se.clamp_min(1e-12)
    assert float(z.max()) < z_tol, (
        f"mean {result.mean.tolist()} differs from {reference.tolist()} by up to {float(z.max()):.1f} SE"
    )


def max_z(result, reference: torch.Tensor) -> float:
    reference = reference.reshape(-1).to(torch.float64)
    return float(((result.mean - reference).abs() / result.bias_se.clamp_min(1e-12)).max())
