"""gradvar's gradient estimators over ``torch.distributions``.

>>> import estimators
>>> est = estimators.get("reinforce", baseline="leave_one_out")
>>> out = est(f, dist, n_samples=8, generator=torch.Generator().manual_seed(0))
>>> out.surrogate.backward()   # gradients of sum_batch E[f] land on the parameters

See ``base`` for the contract and each module's docstring for the math.
"""
from .base import Estimator, EstimatorOutput
from .registry import available, estimator_class, get, register, supporting

# Importing the modules registers their estimators.
from . import exact, gumbel_softmax, pathwise, reinforce, straight_through  # noqa: E402,F401
from .variance import VarianceResult, measure_variance  # noqa: E402

__all__ = [
    "Estimator",
    "EstimatorOutput",
    "VarianceResult",
    "available",
    "estimator_class",
    "get",
    "measure_variance",
    "register",
    "supporting",
]
