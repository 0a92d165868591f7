import math

import pytest
import torch

from textdiff.schedules import NoiseSchedule


def test_sqrt_schedule_follows_the_paper_formula():
    # ᾱ_t = Π(1 − β_s) = ᾱ((t+1)/T) / ᾱ(0) with ᾱ(τ) = 1 − √(τ + 1e-4), wherever no β is clipped.
    T = 2000
    schedule = NoiseSchedule.from_name("sqrt", T)
    alpha_bar = lambda tau: 1 - math.sqrt(tau + 1e-4)  # noqa: E731
    for t in (0, 1, 10, 500, 1998):
        assert schedule.alphas_cumprod[t].item() == pytest.approx(alpha_bar((t + 1) / T) / alpha_bar(0), rel=1e-9)


@pytest.mark.parametrize("name", ["sqrt", "cosine", "linear"])
def test_schedules_decrease_from_one_to_near_zero(name):
    schedule = NoiseSchedule.from_name(name, 1000)
    a = schedule.alphas_cumprod
    assert a.shape == (1000,)
    assert torch.all(a[1:] < a[:-1])
    assert 0.9 < a[0] < 1.0
    assert a[-1] < 0.01
    assert torch.all((schedule.betas > 0) & (schedule.betas <= 0.999))


def test_sqrt_schedule_adds_noise_fast_at_first():
    sqrt, cosine = NoiseSchedule.from_name("sqrt", 2000), NoiseSchedule.from_name("cosine", 2000)
    assert sqrt.alphas_cumprod[50] < 0.85 < cosine.alphas_cumprod[50]


def test_linear_endpoints_rescale_with_T():
    schedule = NoiseSchedule.from_name("linear", 1000)
    assert schedule.betas[0].item() == pytest.approx(1e-4)
    assert schedule.betas[-1].item() == pytest.approx(0.02)


def test_q_sample_is_the_closed_form():
    schedule = NoiseSchedule.from_name("sqrt", 100)
    x0, noise = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    t = torch.tensor([0, 50, 99])
    x_t = schedule.q_sample(x0, t, noise)
    for i in range(3):
        a = schedule.alphas_cumprod[t[i]].float()
        torch.testing.assert_close(x_t[i], a.sqrt() * x0[i] + (1 - a).sqrt() * noise[i])


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown noise schedule 'quadratic'"):
        NoiseSchedule.from_name("quadratic", 10)
