"""gradvar's gradient estimators over ``torch.distributions``.

>>> import estimators
>>> est = estimators.get("reinforce", baseline="leave_one_out")
>>> out = est(f, dist, n_samples=8, generator=torch.Generator().manual_seed(0))
>>> out.surrogate.backward()   # gradients of sum_batch E[f] land on the parameters

See ``base`` for the contract and each module's docstring for the math. Every module of this package is
imported here, so an estimator in a new file registers itself (``@register``).
"""
from .base import Estimator, EstimatorOutput
from .capabilities import Capabilities
from .registry import available, estimator_class, get, register, supporting

from .measure import VarianceResult, measure_until, measure_variance


def _register_package_modules() -> None:
    """Import every module of this package: a new estimator is one file here, registered by its import."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_register_package_modules()

__all__ = [
    "Capabilities",
    "Estimator",
    "EstimatorOutput",
    "VarianceResult",
    "available",
    "estimator_class",
    "get",
    "measure_until",
    "measure_variance",
    "register",
    "supporting",
]
