import math

import pytest
import torch

from textdiff.samplers import DDPMSampler
from textdiff.schedules import NoiseSchedule


@pytest.fixture
def sampler():
    return DDPMSampler(NoiseSchedule.from_name("sqrt", 100))


def test_respacing_visits_evenly_spaced_descending_steps(sampler):
    sampler.set_timesteps(5)
    assert sampler.timesteps.tolist() == [99, 74, 50, 25, 0]
    assert sampler.previous_timestep(99) == 74
    assert sampler.previous_timestep(0) == -1


def test_set_timesteps_rejects_impossible_counts(sampler):
    with pytest.raises(ValueError, match="between 1 and the 100"):
        sampler.set_timesteps(101)


def test_add_noise_with_zero_noise_scales_x0(sampler):
    x0 = torch.randn(2, 3, 4)
    out = sampler.add_noise(x0, torch.zeros_like(x0), 10)
    torch.testing.assert_close(out, x0 * sampler.schedule.alphas_cumprod[10].sqrt().float())


def test_last_step_returns_the_prediction(sampler):
    sampler.set_timesteps(4)
    x0 = torch.randn(2, 3, 4)
    out = sampler.step(x0, 0, torch.randn(2, 3, 4), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.prev_sample, x0)


def test_step_matches_the_posterior_of_the_forward_process(sampler):
    # Unrespaced, a step from t samples q(x_{t-1} | x_t, x0): check mean and variance over many draws.
    t = 40
    x0 = torch.full((20000, 1, 1), 0.7)
    x_t = torch.full((20000, 1, 1), -0.3)
    out = sampler.step(x0, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    a_t, a_prev = sampler.schedule.alphas_cumprod[t].item(), sampler.schedule.alphas_cumprod[t - 1].item()
    beta = 1 - a_t / a_prev
    mean = math.sqrt(a_prev) * beta / (1 - a_t) * 0.7 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * -0.3
    var = beta * (1 - a_prev) / (1 - a_t)
    assert out.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 20000))
    assert out.var().item() == pytest.approx(var, rel=0.05)


def test_step_is_reproducible_with_a_generator(sampler):
    sampler.set_timesteps(10)
    x0, x_t = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    a = sampler.step(x0, 99, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
    b = sampler.step(x0, 99, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
    torch.testing.assert_close(a, b)
