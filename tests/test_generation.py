import pytest
import torch

from textdiff.generation import GenerationOutput, pad_after_eos


def test_same_seed_same_text(tiny_model):
    a = tiny_model.generate(num_return_sequences=3, num_inference_steps=4, seed=7)
    b = tiny_model.generate(num_return_sequences=3, num_inference_steps=4, seed=7)
    c = tiny_model.generate(num_return_sequences=3, num_inference_steps=4, seed=8)
    assert a.shape == (3, 12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_generator_and_seed_agree(tiny_model):
    a = tiny_model.generate(num_return_sequences=2, num_inference_steps=3, seed=5)
    b = tiny_model.generate(num_return_sequences=2, num_inference_steps=3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_history_has_one_entry_per_step(tiny_model):
    out = tiny_model.generate(
        num_return_sequences=2, max_length=7, num_inference_steps=5, seed=0, return_dict_in_generate=True
    )
    assert isinstance(out, GenerationOutput)
    assert out.sequences.shape == (2, 7)
    assert out.history.shape == (5, 2, 7)
    assert out.timesteps.tolist() == [99, 74, 50, 25, 0]


def test_generate_leaves_training_mode_alone(tiny_model):
    tiny_model.train()
    tiny_model.generate(num_inference_steps=2, seed=0)
    assert tiny_model.training


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_length": 13}, "max_length"),
        ({"num_return_sequences": 0}, "num_return_sequences"),
        ({"sampler": "euler"}, "Unknown sampler"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"seed": 1, "generator": torch.Generator()}, "either"),
    ],
)
def test_bad_arguments_are_clear_errors(tiny_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.generate(**kwargs)


def test_pad_after_eos():
    ids = torch.tensor([[1, 5, 2, 7, 2, 9], [1, 5, 6, 7, 8, 9]])
    assert pad_after_eos(ids, eos_token_id=2, pad_token_id=0).tolist() == [[1, 5, 2, 0, 0, 0], [1, 5, 6, 7, 8, 9]]


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++"])
def test_generate_with_every_sampler(tiny_model, sampler):
    out = tiny_model.generate(num_return_sequences=2, num_inference_steps=5, sampler=sampler, seed=0,
                              return_dict_in_generate=True)
    assert out.sequences.shape == (2, 12) and out.history.shape == (5, 2, 12)


def test_generate_with_a_sampler_instance(tiny_model):
    from textdiff import NoiseSchedule
    from textdiff.samplers import DDIMSampler

    sampler = DDIMSampler(NoiseSchedule.from_name("sqrt", 100), eta=0.5)
    a = tiny_model.generate(num_return_sequences=2, num_inference_steps=5, sampler=sampler, seed=3)
    b = tiny_model.generate(num_return_sequences=2, num_inference_steps=5, sampler=sampler, seed=3)
    assert torch.equal(a, b)
