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


from textdiff.samplers import SAMPLERS, DDIMSampler, DPMSolverSampler  # noqa: E402


def test_ddim_with_eta_one_has_ddpms_posterior_variance_and_mean():
    schedule = NoiseSchedule.from_name("sqrt", 100)
    ddpm, ddim = DDPMSampler(schedule), DDIMSampler(schedule, eta=1.0)
    for s in (ddpm, ddim):
        s.set_timesteps(10)
    t, prev = 66, 55
    assert ddim.previous_timestep(t) == prev
    a_t, a_s = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[prev].item()
    assert ddim.variance(t) == pytest.approx((1 - a_t / a_s) * (1 - a_s) / (1 - a_t))
    x0 = torch.full((40000, 1, 1), 0.5)
    x_t = torch.full((40000, 1, 1), -1.0)
    a = ddpm.step(x0, t, x_t, generator=torch.Generator().manual_seed(0)).prev_sample
    b = ddim.step(x0, t, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
    assert a.mean().item() == pytest.approx(b.mean().item(), abs=0.01)
    assert a.var().item() == pytest.approx(b.var().item(), rel=0.05)


def test_ddim_eta_zero_is_deterministic_and_inverts_add_noise():
    schedule = NoiseSchedule.from_name("sqrt", 100)
    sampler = DDIMSampler(schedule, eta=0.0)
    sampler.set_timesteps(10)
    x0, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    x_t = sampler.add_noise(x0, noise, 66)
    # With the true x0, a deterministic step lands on the same-noise point of the earlier timestep.
    out = sampler.step(x0, 66, x_t).prev_sample
    torch.testing.assert_close(out, sampler.add_noise(x0, noise, 55), rtol=1e-4, atol=1e-5)


def test_dpm_solver_first_step_equals_deterministic_ddim():
    schedule = NoiseSchedule.from_name("cosine", 100)
    solver, ddim = DPMSolverSampler(schedule), DDIMSampler(schedule, eta=0.0)
    for s in (solver, ddim):
        s.set_timesteps(8)
    x0, x_t = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t = int(solver.timesteps[0])
    torch.testing.assert_close(solver.step(x0, t, x_t).prev_sample, ddim.step(x0, t, x_t).prev_sample)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_reaches_x0_when_the_prediction_is_exact(name):
    schedule = NoiseSchedule.from_name("sqrt", 200)
    sampler = SAMPLERS[name](schedule)
    sampler.set_timesteps(12)
    x0 = torch.randn(3, 5, 4)
    x = torch.randn(3, 5, 4)
    generator = torch.Generator().manual_seed(0)
    for t in sampler.timesteps.tolist():
        x = sampler.step(x0, t, x, generator=generator).prev_sample
    torch.testing.assert_close(x, x0)


def test_dpm_solver_converges_faster_than_first_order_ddim():
    # A smooth x0-predictor (x̂0 = tanh of x_t scaled by the signal level) integrated with few and many steps:
    # the second-order solver's 10-step result is closer to the 500-step reference than DDIM's (first order).
    schedule = NoiseSchedule.from_name("cosine", 1000)

    def predictor(x: torch.Tensor, t: int) -> torch.Tensor:
        return torch.tanh(2.0 * x * schedule.alphas_cumprod[t].sqrt().float())

    def run(sampler_class, steps: int) -> torch.Tensor:
        sampler = sampler_class(schedule)
        sampler.set_timesteps(steps)
        x = torch.linspace(-2, 2, 50).view(1, 50, 1)
        for t in sampler.timesteps.tolist():
            x = sampler.step(predictor(x, t), t, x).prev_sample
        return x

    reference = run(DPMSolverSampler, 500)
    solver_error = (run(DPMSolverSampler, 10) - reference).abs().max()
    ddim_error = (run(DDIMSampler, 10) - reference).abs().max()
    assert solver_error < 0.5 * ddim_error


def test_renoise_step_draws_from_the_forward_process_of_the_prediction_alone():
    from textdiff.samplers import RenoiseSampler

    schedule = NoiseSchedule.from_name("sqrt", 100)
    sampler = RenoiseSampler(schedule)
    sampler.set_timesteps(10)
    t, prev = 66, 55
    x0 = torch.full((40000, 1, 1), 0.5)
    # x_t does not enter the step: two different x_t with one generator seed give the same x_s.
    a = sampler.step(x0, t, torch.full_like(x0, -3.0), generator=torch.Generator().manual_seed(0))
    b = sampler.step(x0, t, torch.full_like(x0, 3.0), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.prev_sample, b.prev_sample)
    a_s = schedule.alphas_cumprod[prev].item()
    assert a.std == pytest.approx((1 - a_s) ** 0.5)
    assert a.prev_sample.mean().item() == pytest.approx(a_s**0.5 * 0.5, abs=0.01)
    assert a.prev_sample.var().item() == pytest.approx(1 - a_s, rel=0.05)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "renoise", "dpm-solver++"])
def test_a_step_given_its_noise_is_the_step_that_draws_it(name):
    # What the compiled loop relies on (textdiff/compilation.py): ε drawn first, in the steps' order, for the steps
    # that `draws_noise`, gives every step exactly what drawing it inside the step would.
    sampler = SAMPLERS[name](NoiseSchedule.from_name("sqrt", 100))
    if name == "ddim":
        sampler.eta = 1.0
    sampler.set_timesteps(4)
    x0, x = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    drawn, given = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    noises = iter([torch.randn(x.shape, generator=given) for t in sampler.timesteps.tolist() if sampler.draws_noise(t)])
    a = b = x
    for t in sampler.timesteps.tolist():  # one trajectory, then the other (DPM-Solver keeps the step before)
        a = sampler.step(x0, t, a, generator=drawn).prev_sample
    for t in sampler.timesteps.tolist():
        b = sampler.step(x0, t, b, noise=next(noises) if sampler.draws_noise(t) else None).prev_sample
    torch.testing.assert_close(a, b)
    assert next(noises, None) is None and sampler.draws_noise(0) is False
    assert sampler.unrollable == (name != "dpm-solver++")
