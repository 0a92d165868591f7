import torch

import textdiff
from tests.conftest import tiny_config
from textdiff import DiffusionLMLoss, NoiseSchedule


def test_loss_terms_are_finite_and_sum():
    model = textdiff.TextDiffusionModel(tiny_config())
    loss = DiffusionLMLoss(NoiseSchedule.from_name("sqrt", 100))
    out = loss(model, torch.randint(0, 100, (8, 12)), generator=torch.Generator().manual_seed(0))
    for term in (out.loss, out.mse, out.rounding, out.prior):
        assert torch.isfinite(term) and term.ndim == 0
    torch.testing.assert_close(out.loss, out.mse + out.rounding + out.prior)


def test_loss_is_deterministic_given_a_generator():
    model = textdiff.TextDiffusionModel(tiny_config())
    loss = DiffusionLMLoss(NoiseSchedule.from_name("sqrt", 100))
    ids = torch.randint(0, 100, (8, 12))
    a = loss(model, ids, generator=torch.Generator().manual_seed(3)).loss
    b = loss(model, ids, generator=torch.Generator().manual_seed(3)).loss
    assert a.item() == b.item()


def test_all_terms_reach_the_embeddings():
    model = textdiff.TextDiffusionModel(tiny_config())
    loss = DiffusionLMLoss(NoiseSchedule.from_name("sqrt", 100))
    out = loss(model, torch.randint(0, 100, (8, 12)), generator=torch.Generator().manual_seed(0))
    for term in (out.mse, out.rounding, out.prior):
        (grad,) = torch.autograd.grad(term, model.word_embeddings.weight, retain_graph=True)
        assert grad.abs().sum() > 0


def test_loss_falls_over_a_few_steps():
    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config())
    loss = DiffusionLMLoss(NoiseSchedule.from_name("sqrt", 100), self_conditioning_prob=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = torch.randint(4, 100, (16, 12))
    generator = torch.Generator().manual_seed(0)
    values = []
    for _ in range(40):
        out = loss(model, ids, generator=generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        values.append(out.loss.item())
    assert sum(values[-5:]) / 5 < 0.7 * sum(values[:5]) / 5
