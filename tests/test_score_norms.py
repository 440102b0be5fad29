"""The weighted leave-one-out baseline's per-sample squared score norms: closed forms against autograd."""
import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

from estimators import reinforce
from estimators.reinforce import autograd_score_sq_norms, closed_form_score_sq_norms, score_sq_norms


def _gen():
    return torch.Generator().manual_seed(7)


def _cases():
    g = _gen()
    randn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    scale = lambda *s: torch.rand(*s, generator=g) + 0.3  # noqa: E731
    return {
        "normal": Normal(randn(4), scale(4)),
        "independent normal": Independent(Normal(randn(3, 5), scale(3, 5)), 1),
        "normal, two event dims": Independent(Normal(randn(2, 3, 5), scale(2, 3, 5)), 2),
        "bernoulli": Bernoulli(logits=randn(6)),
        "independent bernoulli": Independent(Bernoulli(logits=3 * randn(3, 5)), 1),
        "one-hot categorical": OneHotCategorical(logits=randn(3, 6)),
        "independent one-hot categorical": Independent(OneHotCategorical(logits=randn(3, 4, 6)), 1),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_the_closed_form_equals_the_autograd_score(name):
    dist = _cases()[name]
    torch.manual_seed(0)  # only the test's samples; the library takes generators
    z = dist.sample((9,))
    closed, generic = closed_form_score_sq_norms(dist, z), autograd_score_sq_norms(dist, z)
    assert closed is not None
    assert closed.shape == generic.shape == (9, *dist.batch_shape)
    torch.testing.assert_close(closed, generic, rtol=1e-5, atol=1e-5)


def test_a_wrong_closed_form_is_caught():
    """Meta-test: the Gaussian score without the scale's term (only d/d loc) differs from autograd's."""
    dist = _cases()["independent normal"]
    torch.manual_seed(0)
    z = dist.sample((9,))
    eps2 = ((z - dist.base_dist.loc) / dist.base_dist.scale).pow(2)
    loc_only = (eps2 / dist.base_dist.scale.pow(2)).sum(-1)
    assert not torch.allclose(loc_only, autograd_score_sq_norms(dist, z), rtol=1e-3)


@pytest.mark.parametrize("dist", [Bernoulli(probs=torch.tensor([0.2, 0.7])),
                                  OneHotCategorical(probs=torch.tensor([[0.2, 0.8], [0.5, 0.5]]))],
                         ids=["bernoulli probs", "categorical probs"])
def test_other_parameterizations_fall_back_to_autograd(dist, monkeypatch):
    calls = []
    monkeypatch.setattr(reinforce, "autograd_score_sq_norms",
                        lambda d, z: calls.append(1) or autograd_score_sq_norms(d, z))
    z = dist.sample((3,))
    assert closed_form_score_sq_norms(dist, z) is None
    assert score_sq_norms(dist, z).shape == (3, *dist.batch_shape)
    assert calls == [1]


def test_the_baseline_uses_the_closed_form_and_keeps_its_gradient(monkeypatch):
    """The weighted leave-one-out estimate is the same with either score (to float tolerance)."""
    logits = torch.randn(5, 8, generator=_gen()).requires_grad_(True)
    f = lambda z: (z * torch.arange(8.0)).sum(-1)  # noqa: E731

    def grad_with(score):
        monkeypatch.setattr(reinforce, "score_sq_norms", score)
        est = reinforce.Reinforce(baseline="weighted_leave_one_out")
        out = est(f, Independent(Bernoulli(logits=logits), 1), 6, torch.Generator().manual_seed(3))
        return torch.autograd.grad(out.surrogate.sum(), logits)[0]

    torch.testing.assert_close(grad_with(score_sq_norms), grad_with(autograd_score_sq_norms), rtol=1e-5, atol=1e-6)
