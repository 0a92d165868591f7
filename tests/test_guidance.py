"""Classifier-guided control on tiny models: the guidance step, length control, composition, every sampler,
bad targets, and `textdiff train-classifier` end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from conftest import E2E, tiny_config

import textdiff
from textdiff.guidance import (
    ClassifierGuidance,
    FieldValue,
    LatentClassifier,
    LatentClassifierConfig,
    Length,
    PartsOfSpeech,
    Spans,
    classifier_path,
    load_classifiers,
)

POS_LABELS = ["START", "END", "PAD", "ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRT", "PRON", "VERB", ".", "X"]
FIELDS = {"food": ["English", "Italian", "Japanese"], "area": ["city centre", "riverside"]}


def classifier(task: str, **settings) -> LatentClassifier:
    torch.manual_seed({"pos": 1, "field_value": 2, "spans": 3}[task])
    config = LatentClassifierConfig(
        task=task,
        max_position_embeddings=12,
        num_diffusion_steps=100,
        hidden_size=32,
        hidden_dropout_prob=0.0,
        attention_dropout_prob=0.0,
        initializer_range=0.2,
        **settings,
    )
    return LatentClassifier(config).eval()


@pytest.fixture(scope="module")
def classifiers() -> dict[str, LatentClassifier]:
    return {
        "pos": classifier("pos", labels=POS_LABELS),
        "field_value": classifier("field_value", fields=FIELDS),
        "spans": classifier("spans", labels=["NONE", "NP", "PP", "VP"]),
    }


CONTROLS = [PartsOfSpeech(["DET", "NOUN", "VERB", "."]), FieldValue("food", "Italian"), Spans([(0, 1, "NP")])]


def guidance_for(classifiers, controls, batch=6, **settings) -> ClassifierGuidance:
    targets = ClassifierGuidance.build_targets([controls] * batch, classifiers, 12)
    return ClassifierGuidance(classifiers={t: classifiers[t] for t in targets}, targets=targets, **settings)


@pytest.mark.parametrize("task", ["pos", "field_value", "spans"])
def test_a_guided_step_raises_the_classifiers_log_probability(classifiers, task):
    control = next(c for c in CONTROLS if c.task == task)
    guidance = guidance_for(classifiers, [control], fluency_weight=0.0)
    x = torch.randn(6, 12, 16, generator=torch.Generator().manual_seed(0))
    before = guidance.log_prob(x, 50)
    after = guidance.log_prob(guidance(x, x, 1.0, 50), 50)
    assert (after > before).all(), (before, after)


def test_composed_controls_both_move(classifiers):
    guidance = guidance_for(classifiers, CONTROLS[:2], batch=32, fluency_weight=0.0)
    x = torch.randn(32, 12, 16, generator=torch.Generator().manual_seed(1))
    guided = guidance(x, x, 1.0, 50)
    for task in ("pos", "field_value"):  # each control's own log-probability rises on average over the rows
        alone = guidance_for(classifiers, [c for c in CONTROLS if c.task == task], batch=32)
        assert alone.log_prob(guided, 50).mean() > alone.log_prob(x, 50).mean() + 0.01, task


def test_the_fluency_term_alone_pulls_the_latent_to_the_steps_mean(classifiers):
    guidance = guidance_for(classifiers, CONTROLS[:1], guidance_scale=0.0, fluency_weight=1.0)
    x, mean = torch.randn(6, 12, 16), torch.zeros(6, 12, 16)
    assert guidance(x, mean, 0.5, 50).norm() < x.norm()


@pytest.mark.parametrize("sampler", sorted(textdiff.SAMPLERS))
def test_guidance_works_through_the_decoding_loop_with_every_sampler(tiny_model, classifiers, sampler):
    def final_log_prob(steps: int) -> torch.Tensor:
        latents = []
        tiny_model.generate(
            num_return_sequences=16,
            num_inference_steps=10,
            sampler=sampler,
            seed=0,
            max_length=12,
            controls=CONTROLS,
            classifiers=classifiers,
            guidance_steps=steps,
            callback_on_step_end=lambda step, t, x, pred_x0: latents.append(x),
        )
        return guidance_for(classifiers, CONTROLS, batch=16).log_prob(latents[-1], -1)

    assert final_log_prob(3).mean() > final_log_prob(0).mean()


def test_length_control_gives_the_exact_length(tiny_model):
    tiny_model.config.unk_token_id = 3  # an unknown word would vanish from the decoded text
    lengths = [1, 3, 5, 7, 10]
    ids = tiny_model.generate(
        num_return_sequences=len(lengths),
        num_inference_steps=6,
        seed=0,
        max_length=12,
        controls=[[Length(n)] for n in lengths],
    )
    config = tiny_model.config
    for row, n in zip(ids.tolist(), lengths):
        assert row[0] == config.bos_token_id and row[n + 1] == config.eos_token_id
        words = row[1 : n + 1]
        assert not {config.bos_token_id, config.eos_token_id, config.pad_token_id, 3} & set(words)
        assert row[n + 2 :] == [config.pad_token_id] * (12 - n - 2)


@pytest.mark.parametrize(
    "controls, message",
    [
        ([FieldValue("cuisine", "Italian")], "Unknown field 'cuisine'"),
        ([FieldValue("food", "Klingon")], "Unknown value 'Klingon'"),
        ([Length(11)], "impossible with 12 positions"),
        ([Length(0)], "positive number of words"),
        ([PartsOfSpeech(["NOUN"] * 11)], "raise max_length or shorten"),
        ([PartsOfSpeech(["NOUN", "BANANA"])], "Unknown tags ['BANANA']"),
        ([Spans([(3, 1, "NP")])], "is impossible"),
        ([Spans([(0, 1, "XYZ")])], "Unknown span label 'XYZ'"),
        ([FieldValue("food", "Italian"), FieldValue("food", "English")], "conflict"),
        (["food=Italian"], "controls must be a list"),
        ([[Length(3)]] * 2, "2 lists of controls"),
    ],
)
def test_impossible_or_unknown_targets_are_clear_errors(tiny_model, classifiers, controls, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        tiny_model.generate(
            num_return_sequences=3, num_inference_steps=2, max_length=12, controls=controls, classifiers=classifiers
        )


def test_a_missing_classifier_names_the_command_that_trains_it(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="textdiff train-classifier"):
        load_classifiers(tmp_path, {"pos"})


def e2e_rows(split: str, limit: int) -> list[dict]:
    with gzip.open(E2E / f"{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(limit), handle)]


@pytest.fixture(scope="module")
def word_model(tmp_path_factory) -> Path:
    """A saved (untrained) diffusion model with a word-level E2E tokenizer, and a corpus with MRs beside it."""
    root = tmp_path_factory.mktemp("guided")
    corpus = root / "corpus"
    corpus.mkdir()
    for split, limit in (("train", 200), ("validation", 40)):
        with (corpus / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in e2e_rows(split, limit):
                handle.write(json.dumps(row) + "\n")
    tokenizer = textdiff.train_tokenizer([r["text"] for r in e2e_rows("train", 200)], "word", min_frequency=1)
    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(vocab_size=len(tokenizer), max_position_embeddings=40))
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root


def test_train_classifier_saves_classifiers_that_generate_finds(word_model, span_oracle):
    from textdiff.cli import main

    model_dir = word_model / "model"
    for task in ("field_value", "pos", "spans"):
        args = [
            "train-classifier",
            "--model",
            str(model_dir),
            "--task",
            task,
            "--data",
            str(word_model / "corpus"),
            "--steps",
            "15",
            "--batch-size",
            "8",
            "--hidden-size",
            "32",
        ]
        assert main(args) == 0
        report = json.loads((classifier_path(model_dir, task) / "eval.json").read_text())
        assert report["steps"] == 15 and set(report["held_out_accuracy"]) >= {"-1", "0"}
    model, _ = textdiff.load_pretrained(str(model_dir))
    ids = model.generate(
        num_return_sequences=2,
        num_inference_steps=4,
        seed=0,
        controls=[FieldValue("food", "Italian"), PartsOfSpeech(["NOUN", "VERB", "."]), Spans([(0, 1, "NP")])],
    )
    assert ids.shape == (2, 40)
    loaded = load_classifiers(model_dir, {"pos"})["pos"]
    assert loaded.config.labels[:3] == ["START", "END", "PAD"]


# --- classifier-free guidance: a conditional model --------------------------------------------------------------

LABELS = ["area=riverside", "food=English", "food=Italian"]


@pytest.fixture
def conditional_model() -> textdiff.TextDiffusionModel:
    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(condition_labels=LABELS))
    torch.nn.init.normal_(model.condition_embed.weight, std=1.0)  # a "trained" conditioning
    return model.eval()


def test_zero_conditions_are_the_unconditional_model(conditional_model):
    x, t = torch.randn(2, 12, 16), torch.tensor([5, 50])
    plain = conditional_model(x, t).pred_x0
    torch.testing.assert_close(conditional_model(x, t, conditions=torch.zeros(2, 3)).pred_x0, plain)
    assert not torch.allclose(conditional_model(x, t, conditions=torch.tensor([[0, 0, 1.0]] * 2)).pred_x0, plain)


def test_classifier_free_guidance_decodes_with_the_models_conditions(conditional_model):
    steps = []

    def capture(step, t, x, pred_x0):
        steps.append(pred_x0)

    common = {
        "num_return_sequences": 2,
        "num_inference_steps": 4,
        "seed": 0,
        "controls": [FieldValue("food", "Italian")],
    }
    conditional_model.generate(cfg_scale=1.0, callback_on_step_end=capture, **common)
    conditional_model.generate(cfg_scale=3.0, callback_on_step_end=capture, **common, clamp=False)
    assert not torch.allclose(steps[0], steps[4])  # the scale changes the x0 estimate
    with pytest.raises(ValueError, match="knows no 'food' = 'Klingon'"):
        conditional_model.generate(controls=[FieldValue("food", "Klingon")], cfg_scale=2.0)


def test_cfg_scale_on_an_unconditional_model_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="needs a conditional model"):
        tiny_model.generate(controls=[FieldValue("food", "Italian")], cfg_scale=2.0)


def test_condition_dropout_one_is_the_unconditional_loss(conditional_model):
    schedule = textdiff.NoiseSchedule.from_name("sqrt", 100)
    ids = torch.randint(3, 100, (4, 12))
    conditions = torch.ones(4, 3)
    dropped = textdiff.DiffusionLMLoss(schedule, condition_dropout=1.0)
    with_all = dropped(conditional_model, ids, generator=torch.Generator().manual_seed(0), conditions=conditions)
    plain = textdiff.DiffusionLMLoss(schedule)(conditional_model, ids, generator=torch.Generator().manual_seed(0))
    assert with_all.mse.item() != pytest.approx(0.0)
    # The same t and noise are drawn first; with every condition dropped the denoiser sees zeros.
    x_plain = textdiff.DiffusionLMLoss(schedule, condition_dropout=1.0)(
        conditional_model, ids, generator=torch.Generator().manual_seed(0), conditions=torch.zeros(4, 3)
    )
    assert with_all.loss.item() == pytest.approx(x_plain.loss.item())
    assert plain.loss.item() == pytest.approx(x_plain.loss.item())


def test_cli_takes_controls_as_flags_or_a_json_file(word_model, span_oracle, tmp_path, capsys):
    from textdiff.cli import main

    model_dir = word_model / "model"
    if not (classifier_path(model_dir, "field_value") / "model.safetensors").is_file():
        test_train_classifier_saves_classifiers_that_generate_finds(word_model, span_oracle)
    common = ["generate", "--model", str(model_dir), "--num-samples", "2", "--steps", "3"]
    assert main([*common, "--field", "food=Italian", "--length", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    assert all(len(line.split()) == 5 for line in lines)
    spec = tmp_path / "controls.json"
    spec.write_text(json.dumps({"pos": ["NOUN", "VERB", "."], "spans": [[0, 1, "NP"]], "length": 4}))
    assert main([*common, "--controls", str(spec), "--guidance-steps", "1"]) == 0
    with pytest.raises(SystemExit):
        main([*common, "--field", "food:Italian"])
    assert "--field takes FIELD=VALUE" in capsys.readouterr().err
    spec.write_text(json.dumps({"colour": "red"}))
    with pytest.raises(SystemExit):
        main([*common, "--controls", str(spec)])
    assert "Unknown control kinds ['colour']" in capsys.readouterr().err


# --- Mentions: guidance through the denoiser's own word distribution ---------------------------------------------


def test_the_word_scorer_is_the_log_of_the_summed_run_probabilities():
    from textdiff.guidance import DenoiserWordScorer

    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(prediction_type="logits")).eval()
    scorer = DenoiserWordScorer(model)
    x, t = torch.randn(3, 12, 16), torch.full((3,), 40)
    target = torch.tensor([[7, 9], [5, -100], [-100, -100]])  # two words; one word; no control in row 2
    with torch.no_grad():
        got = scorer.log_prob(x, t, target)
        p = model(x, t).logits.float().softmax(-1)  # (B, L, V)
    # Σ_a Π_j p(w_{a+j} = v_j) over the runs after [START] (position 0) that leave room for [END] (position 11)
    runs = [sum(p[0, a, 7] * p[0, a + 1, 9] for a in range(1, 10)), p[1, 1:11, 5].sum()]
    torch.testing.assert_close(got[:2], torch.stack(runs).log())
    assert got[2] == 0.0


def test_the_word_scorer_aligns_the_words_inside_each_rows_window_and_attends_only_there():
    from textdiff.guidance import DenoiserWordScorer

    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(prediction_type="logits")).eval()
    mask = torch.arange(12)[None] < torch.tensor([[6], [12]])  # row 0: [START] + 4 words + [END]; row 1: all
    x, t = torch.randn(2, 12, 16), torch.full((2,), 40)
    with torch.no_grad():
        got = DenoiserWordScorer(model, mask).log_prob(x, t, torch.tensor([[7, 9], [7, 9]]))
        p = model(x, t, attention_mask=mask).logits.float().softmax(-1)  # the windows the decoder sees
    runs = [sum(p[0, a, 7] * p[0, a + 1, 9] for a in range(1, 4)), sum(p[1, a, 7] * p[1, a + 1, 9] for a in range(1, 10))]
    torch.testing.assert_close(got, torch.stack(runs).log())


def test_generate_gives_the_word_scorer_the_length_priors_windows(monkeypatch):
    from textdiff.guidance import DenoiserWordScorer, Mentions, word_guidance

    masks = []

    class Recording(DenoiserWordScorer):
        def __init__(self, model, attention_mask=None):
            super().__init__(model, attention_mask)
            masks.append(attention_mask)

    monkeypatch.setitem(word_guidance.MODEL_SCORERS, "mentions", Recording)
    prior = [0.0] * 5 + [0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]  # windows of 5 or 8 positions
    model = textdiff.TextDiffusionModel(tiny_config(prediction_type="logits", length_prior=prior)).eval()
    model.generate(num_return_sequences=8, num_inference_steps=3, seed=0, controls=[Mentions([7, 9])])
    windows = masks[-1].sum(-1)
    assert masks[-1].shape == (8, 12) and set(windows.tolist()) <= {5, 8} and len(set(windows.tolist())) == 2


def test_mentions_guidance_raises_the_score_and_leaves_the_model_alone():
    from textdiff.guidance import DenoiserWordScorer, Mentions

    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(prediction_type="logits")).eval()
    scorers = {"mentions": DenoiserWordScorer(model)}
    guidance = guidance_for(scorers, [Mentions([7, 9])], fluency_weight=0.0, step_size=0.5)
    x = torch.randn(6, 12, 16, generator=torch.Generator().manual_seed(0))
    assert (guidance.log_prob(guidance(x, x, 1.0, 50), 50) > guidance.log_prob(x, 50)).all()
    assert all(p.grad is None and p.requires_grad for p in model.parameters())  # only the latent was differentiated


def test_generate_with_mentions_needs_no_classifier_and_composes_with_one(classifiers):
    from textdiff.guidance import DenoiserWordScorer, Mentions

    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(tiny_config(prediction_type="logits"))
    controls = [Mentions([7, 9]), PartsOfSpeech(["DET", "NOUN", "VERB", "."])]

    def final_score(steps: int) -> torch.Tensor:
        latents = []
        model.generate(num_return_sequences=16, num_inference_steps=10, seed=0, controls=controls[:1],
                       guidance_steps=steps, callback_on_step_end=lambda step, t, x, pred_x0: latents.append(x))  # fmt: skip
        scorer = DenoiserWordScorer(model)
        return scorer.log_prob(latents[-2], torch.full((16,), 10), torch.tensor([[7, 9]] * 16)).detach()

    assert final_score(3).mean() > final_score(0).mean()
    ids = model.generate(num_return_sequences=2, num_inference_steps=4, seed=0, controls=controls,
                         classifiers={"pos": classifiers["pos"]})  # fmt: skip
    assert ids.shape == (2, 12)


def test_mentions_from_text_names_words_the_vocabulary_lacks(word_model):
    from textdiff.guidance import Mentions

    _, tokenizer = textdiff.load_pretrained(str(word_model / "model"))
    assert Mentions.from_text("Italian food", tokenizer).token_ids == tuple(
        tokenizer("Italian food", add_special_tokens=False)["input_ids"]
    )
    with pytest.raises(ValueError, match=r"\['Zanzibarish'\] not in the model's vocabulary"):
        Mentions.from_text("Zanzibarish food", tokenizer)
    with pytest.raises(ValueError, match="at least one word"):
        Mentions.from_text("", tokenizer)


def test_the_control_evaluation_asks_for_field_values_by_words_without_a_classifier(word_model, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from textdiff.evaluation.control_eval import run_control_evaluation

    _, tokenizer = textdiff.load_pretrained(str(word_model / "model"))
    torch.manual_seed(0)
    teacher = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=48, n_embd=16, n_layer=1, n_head=1))
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    model_dir = str(word_model / "model")  # it has no field-value classifier: the words route needs none
    report = run_control_evaluation(model_dir, str(tmp_path / "teacher"), "semantic", num_targets=3,
                                    num_inference_steps=4, semantic_route="words")  # fmt: skip
    assert [row["route"] for row in report["rows"]] == ["denoiser word guidance", "unguided"]
    assert report["settings"]["semantic_route"] == "words" and report["rows"][0]["num_texts"] == 3
    again = run_control_evaluation(model_dir, str(tmp_path / "teacher"), "semantic", num_targets=3,
                                   num_inference_steps=4, semantic_route="words", x0_temperature=1.0)  # fmt: skip
    assert again["settings"]["x0_temperature"] == 1.0 and report["settings"]["x0_temperature"] is None
    assert again["rows"][1]["examples"] == report["rows"][1]["examples"]  # τ = 1 is the model's own x̂0
    with pytest.raises(ValueError, match="classifies the clean word"):  # an x0-predicting model has no logits to sharpen
        run_control_evaluation(model_dir, str(tmp_path / "teacher"), "semantic", num_targets=3,
                               num_inference_steps=4, semantic_route="words", x0_temperature=0.5)  # fmt: skip
    with pytest.raises(ValueError, match="semantic_route must be one of"):
        run_control_evaluation(model_dir, str(tmp_path / "teacher"), "semantic", semantic_route="cfg")


def test_guidance_start_leaves_the_first_steps_unguided(classifiers):
    guidance = guidance_for(classifiers, CONTROLS[:1], skip_first_fraction=0.3, skip_last_fraction=0.1)
    assert [guidance.active(i, 10) for i in range(10)] == [False] * 3 + [True] * 6 + [False]
    with pytest.raises(ValueError, match=r"guidance_start must be in \[0, 1\)"):
        textdiff.DecodingConfig(guidance_start=1.0)
