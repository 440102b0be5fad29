"""A VAE's latent space, as data: family and shape (no tensors, so studies can be planned without models)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch.distributions import Bernoulli, Distribution, Normal, OneHotCategorical

#: The distribution family of the posterior q(z|x) of each latent family (under ``Independent``).
FAMILY_CLASS: dict[str, type[Distribution]] = {"gaussian": Normal, "bernoulli": Bernoulli,
                                                "categorical": OneHotCategorical}


@dataclass(frozen=True)
class LatentSpec:
    """``gaussian``/``bernoulli``: ``dim`` variables; ``categorical``: ``groups`` one-hot groups of ``classes``."""

    family: Literal["gaussian", "bernoulli", "categorical"] = "gaussian"
    dim: int = 0
    groups: int = 0
    classes: int = 0

    def validate(self) -> None:
        if self.family == "categorical":
            if self.groups < 1 or self.classes < 2 or self.dim:
                raise ValueError("a categorical latent needs groups >= 1 and classes >= 2 (and no dim)")
        elif self.dim < 1 or self.groups or self.classes:
            raise ValueError(f"a {self.family} latent needs dim >= 1 (and no groups or classes)")

    @property
    def family_class(self) -> type[Distribution]:
        return FAMILY_CLASS[self.family]

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.groups, self.classes) if self.family == "categorical" else (self.dim,)

    @property
    def flat_dim(self) -> int:
        return math.prod(self.event_shape)

    @property
    def n_outputs(self) -> int:
        """Encoder outputs: loc and log-scale for Gaussian, logits otherwise."""
        return 2 * self.dim if self.family == "gaussian" else self.flat_dim

    @property
    def support_size(self) -> float:
        """Joint support size of a discrete latent (inf for Gaussian)."""
        if self.family == "gaussian":
            return math.inf
        return float(2**self.dim if self.family == "bernoulli" else self.classes**self.groups)

    def label(self) -> str:
        if self.family == "categorical":
            return f"categorical({self.groups}x{self.classes})"
        return f"{self.family}({self.dim})"
