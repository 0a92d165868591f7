import pytest
import torch
from conftest import tiny_config

import textdiff
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


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver++", "renoise"])
def test_generate_with_every_sampler(tiny_model, sampler):
    out = tiny_model.generate(
        num_return_sequences=2, num_inference_steps=5, sampler=sampler, seed=0, return_dict_in_generate=True
    )
    assert out.sequences.shape == (2, 12) and out.history.shape == (5, 2, 12)


def test_generate_with_a_sampler_instance(tiny_model):
    from textdiff import NoiseSchedule
    from textdiff.samplers import DDIMSampler

    sampler = DDIMSampler(NoiseSchedule.from_name("sqrt", 100), eta=0.5)
    a = tiny_model.generate(num_return_sequences=2, num_inference_steps=5, sampler=sampler, seed=3)
    b = tiny_model.generate(num_return_sequences=2, num_inference_steps=5, sampler=sampler, seed=3)
    assert torch.equal(a, b)


def test_prompt_positions_are_unchanged(tiny_model):
    prompt = torch.tensor([[1, 17, 42, 5]])
    out = tiny_model.generate(num_return_sequences=3, num_inference_steps=6, seed=0, input_ids=prompt, max_new_tokens=6)
    assert out.shape == (3, 10)
    assert torch.equal(out[:, :4], prompt.expand(3, -1))


def test_infilling_round_trip_keeps_every_known_token(tiny_model):
    ids = torch.randint(4, 100, (2, 12))
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, 3:6] = True
    out = tiny_model.generate(
        num_return_sequences=2,
        num_inference_steps=6,
        seed=1,
        input_ids=ids,
        infill_mask=mask,
        return_dict_in_generate=True,
    )
    assert torch.equal(out.sequences[~mask], ids[~mask])
    assert torch.equal(out.history[:, ~mask], ids[~mask].expand(6, -1))


def test_callback_sees_every_step(tiny_model):
    seen = []
    tiny_model.generate(
        num_return_sequences=2,
        num_inference_steps=4,
        seed=0,
        callback_on_step_end=lambda step, t, latents, pred: seen.append((step, t, latents.shape)),
    )
    assert [(s, t) for s, t, _ in seen] == [(0, 99), (1, 66), (2, 33), (3, 0)]
    assert all(shape == (2, 12, 16) for _, _, shape in seen)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_ids": torch.ones(1, 13, dtype=torch.long)}, "prompt has 13 tokens"),
        ({"input_ids": torch.tensor([[1, 500]])}, "outside the vocabulary"),
        ({"infill_mask": torch.ones(1, 12, dtype=torch.bool)}, "needs input_ids"),
        (
            {"input_ids": torch.ones(1, 12, dtype=torch.long), "infill_mask": torch.ones(1, 10, dtype=torch.bool)},
            "same",
        ),
        ({"input_ids": torch.ones(3, 4, dtype=torch.long), "num_return_sequences": 2}, "shape"),
    ],
)
def test_bad_prompts_are_clear_errors(tiny_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.generate(**kwargs)


def test_saved_generation_config_sets_the_defaults(tmp_path, tiny_model):
    from transformers import GenerationConfig

    import textdiff
    from textdiff.tokenization import train_tokenizer

    tokenizer = train_tokenizer([" ".join(f"w{i}" for i in range(96))], "word", min_frequency=1)
    tiny_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    GenerationConfig(sampler="ddim", num_inference_steps=3, clamp=False).save_pretrained(tmp_path)
    model, _ = textdiff.load_pretrained(str(tmp_path))
    out = model.generate(seed=0, return_dict_in_generate=True)
    assert out.timesteps.tolist() == [99, 50, 0]  # 3 steps from the saved config
    explicit = model.generate(seed=0, sampler="ddim", num_inference_steps=3, clamp=False)
    assert torch.equal(out.sequences, explicit)
    assert model.generate(seed=0, num_inference_steps=5, return_dict_in_generate=True).timesteps.shape == (5,)


def test_self_conditioning_feeds_back_the_raw_estimate_as_in_training():
    """Training feeds the denoiser its own unclamped x̂0; decoding must too, even with clamping on."""
    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(self_conditioning=True)).eval()
    seen, outputs = [], []
    forward = model.forward

    def recording(x_t, timesteps, attention_mask=None, self_cond=None, conditions=None, x0_temperature=1.0):
        seen.append(self_cond)
        out = forward(x_t, timesteps, attention_mask=attention_mask, self_cond=self_cond, conditions=conditions,
                      x0_temperature=x0_temperature)  # fmt: skip
        outputs.append(out.pred_x0)
        return out

    model.forward = recording
    model.generate(num_return_sequences=2, num_inference_steps=3, seed=0, clamp=True)
    assert seen[0] is None
    for step in (1, 2):
        torch.testing.assert_close(seen[step], outputs[step - 1])  # the raw estimate, not its nearest embeddings
        assert not torch.allclose(seen[step], model.clamp(outputs[step - 1]))


def test_max_new_tokens_without_a_prompt_is_an_error(tiny_model):
    with pytest.raises(ValueError, match="max_new_tokens counts positions after a prompt"):
        tiny_model.generate(num_return_sequences=1, num_inference_steps=2, max_new_tokens=4)


def test_a_model_built_in_memory_needs_its_classifiers_passed(tiny_model):
    """No folder to look in: generate says to pass classifiers= instead of searching the working directory."""
    with pytest.raises(ValueError, match="pass classifiers="):
        tiny_model.generate(num_inference_steps=2, controls=[textdiff.PartsOfSpeech(["NOUN"])])


def test_a_streamer_gets_every_step_then_end_and_can_stop_the_decode(tiny_model):
    class Recorder:
        def __init__(self, stop_at=None):
            self.updates, self.ended, self.stop_at = [], 0, stop_at

        def put(self, update):
            if update.step == self.stop_at:
                raise KeyboardInterrupt  # what a server's streamer raises for a client that left
            self.updates.append(update)

        def end(self):
            self.ended += 1

    recorder = Recorder()
    out = tiny_model.generate(num_return_sequences=2, num_inference_steps=5, seed=0, streamer=recorder,
                              return_dict_in_generate=True)  # fmt: skip
    assert [u.step for u in recorder.updates] == list(range(5)) and recorder.ended == 1
    assert all(u.num_steps == 5 and u.ids.shape == (2, 12) for u in recorder.updates)
    assert [u.t for u in recorder.updates] == out.timesteps.tolist()
    assert torch.equal(torch.stack([u.confidence for u in recorder.updates]), out.confidence)
    plain = tiny_model.generate(num_return_sequences=2, num_inference_steps=5, seed=0)
    assert torch.equal(plain, out.sequences)  # streaming does not change the text

    tiny_model.train()
    stopping = Recorder(stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.generate(num_inference_steps=5, seed=0, streamer=stopping)
    assert len(stopping.updates) == 2 and stopping.ended == 0 and tiny_model.training
    with pytest.raises(ValueError, match="put\\(update\\) and end\\(\\)"):
        tiny_model.generate(num_inference_steps=2, streamer=object())


def test_x0_temperature_sharpens_the_soft_estimate_of_a_word_classifier(tmp_path):
    from transformers import GenerationConfig

    from textdiff.generation import Denoiser

    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(prediction_type="logits")).eval()
    x, t = torch.randn(2, 12, model.config.embedding_dim), 50
    plain, scores = Denoiser(model, None)(x, t)
    sharp, sharp_scores = Denoiser(model, None, x0_temperature=0.25)(x, t)
    assert torch.equal(scores, sharp_scores)  # the words and their confidences are the model's own
    table = model.embedding_table()
    assert torch.allclose(sharp, (scores / 0.25).softmax(-1) @ table, atol=1e-5)
    assert torch.allclose(plain, scores.softmax(-1) @ table, atol=1e-5)
    near = lambda x0: (x0[:, :, None] - table).norm(dim=-1).amin(-1).mean()
    assert near(sharp) < near(plain)  # closer to a word embedding

    base = model.generate(num_return_sequences=3, num_inference_steps=4, sampler="renoise", clamp=False, seed=1)
    same = model.generate(num_return_sequences=3, num_inference_steps=4, sampler="renoise", clamp=False, seed=1,
                          x0_temperature=1.0)  # fmt: skip
    colder = model.generate(num_return_sequences=3, num_inference_steps=4, sampler="renoise", clamp=False, seed=1,
                            x0_temperature=0.1)  # fmt: skip
    assert torch.equal(base, same) and not torch.equal(base, colder)
    model.save_pretrained(tmp_path)
    textdiff.train_tokenizer([" ".join(f"w{i}" for i in range(96))], "word", min_frequency=1).save_pretrained(tmp_path)
    GenerationConfig(sampler="renoise", num_inference_steps=4, clamp=False, x0_temperature=0.1).save_pretrained(
        tmp_path
    )
    saved, _ = textdiff.load_pretrained(str(tmp_path))
    assert torch.equal(saved.generate(num_return_sequences=3, seed=1), colder)  # the saved default applies

    with pytest.raises(ValueError, match="classifies the clean word"):
        textdiff.TextDiffusionModel(tiny_config()).generate(num_inference_steps=2, x0_temperature=0.5)
    with pytest.raises(ValueError, match="x0_temperature must be positive"):
        model.generate(num_inference_steps=2, x0_temperature=0.0)


def test_length_buckets_partition_the_rows_and_trade_width_for_groups():
    from textdiff.generation import length_buckets

    windows = torch.tensor([5, 12, 5, 30, 12, 29, 6])
    groups = length_buckets(windows, overhead=0)  # free groups: one per distinct width
    assert sorted(torch.cat(groups).tolist()) == list(range(7))
    assert [sorted(windows[g].tolist()) for g in groups] == [[5, 5], [6], [12, 12], [29], [30]]
    assert len(length_buckets(windows, overhead=10**6)) == 1  # costly groups: the whole batch at once
    middle = length_buckets(windows, overhead=10)  # 18 + 24 + 60 + 3 × 10 beats 60 + 60 + 2 × 10
    assert [sorted(windows[g].tolist()) for g in middle] == [[5, 5, 6], [12, 12], [29, 30]]


def prior_model() -> textdiff.TextDiffusionModel:
    torch.manual_seed(0)
    prior = [0.0, 0.0] + [1.0 / 11] * 11  # windows of 2 … 12 positions, equally likely
    return textdiff.TextDiffusionModel(tiny_config(length_prior=prior)).eval()


def test_bucketed_decoding_keeps_each_row_in_its_window_and_its_seed():
    from textdiff.decoding_config import DecodingConfig
    from textdiff.generation import plan_decoding

    model = prior_model()
    settings = DecodingConfig.resolve(num_inference_steps=3)
    windows = plan_decoding(model, settings, 16, None, None, None, None, None, None, torch.Generator().manual_seed(4),
                            False, None).windows  # fmt: skip  # the windows generate(seed=4) draws first
    out = model.generate(num_return_sequences=16, num_inference_steps=3, seed=4, bucket_lengths=True,
                         return_dict_in_generate=True)  # fmt: skip
    again = model.generate(num_return_sequences=16, num_inference_steps=3, seed=4, bucket_lengths=True)
    plain = model.generate(num_return_sequences=16, num_inference_steps=3, seed=4)
    assert torch.equal(out.sequences, again) and out.sequences.shape == plain.shape == (16, int(windows.max()))
    beyond = torch.arange(out.sequences.shape[1])[None] >= windows[:, None]  # (B, L) outside each row's window
    pad = model.config.pad_token_id
    assert out.sequences[beyond].eq(pad).all() and plain[beyond].eq(pad).all()
    assert out.history.shape == (3, 16, int(windows.max())) and out.history[:, beyond].eq(pad).all()


def test_bucketing_leaves_prompts_infilling_and_length_exact():
    model = prior_model()
    prompt = torch.tensor([[1, 7, 8]])
    for request in (
        {"input_ids": prompt},
        {"input_ids": torch.tensor([[1, 7, 0, 9, 2, 0, 0, 0, 0, 0, 0, 0]]),
         "infill_mask": torch.tensor([[False, False, True] + [False] * 9])},
        {"controls": [textdiff.Length(5)]},
    ):  # fmt: skip
        bucketed = model.generate(num_return_sequences=6, num_inference_steps=3, seed=2, bucket_lengths=True, **request)
        assert torch.equal(bucketed, model.generate(num_return_sequences=6, num_inference_steps=3, seed=2, **request))
    kept = model.generate(num_return_sequences=6, num_inference_steps=3, seed=2, bucket_lengths=True, input_ids=prompt)
    assert kept[:, :3].eq(prompt).all()
    written = model.generate(num_return_sequences=6, num_inference_steps=3, seed=2, bucket_lengths=True,
                             controls=[textdiff.Length(5)])  # fmt: skip
    assert written[:, 6].eq(model.config.eos_token_id).all()  # [START] + 5 words, then [END]
