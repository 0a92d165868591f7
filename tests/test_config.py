import pytest

from textdiff.training.config import RunConfig


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load():
    tiny = RunConfig.from_yaml("configs/e2e-tiny.yaml")
    assert tiny.model.embedding_dim == 16 and tiny.diffusion.schedule == "sqrt"
    assert tiny.training.max_minutes is None and tiny.training.max_steps == 3200  # defined by steps, not minutes
    assert tiny.diffusion.prediction_type == "logits" and tiny.diffusion.embedding_scale == 4.0
    assert tiny.data.bucket_by_length and tiny.model.dropout == 0.0
    hour = RunConfig.from_yaml("configs/e2e-cpu-hour.yaml")
    assert hour.training.max_minutes is None and hour.training.max_steps == 16_000 and hour.data.bucket_by_length
    baseline = RunConfig.from_yaml("configs/e2e-paper-recipe.yaml")
    assert baseline.diffusion.prediction_type == "x0" and baseline.diffusion.embedding_scale is None
    assert baseline.training.max_steps == 2000 and baseline.diffusion.min_timestep == 0  # ≈ the same minutes
    paper = RunConfig.from_yaml("configs/e2e.yaml")
    assert paper.model.hidden_size == 768 and paper.training.max_steps == 200_000
    assert paper.diffusion.prediction_type == "logits" and paper.data.bucket_by_length  # the chosen recipe
    assert paper.training.sample_sampler == "renoise" and not paper.training.sample_clamp  # and its decoder
    RunConfig.from_yaml("configs/e2e-teacher.yaml")


def test_yaml_scientific_floats_and_overrides(tmp_path):
    config = RunConfig.from_yaml(write(tmp_path, "training:\n  learning_rate: 1e-4\n"), ["training.max_steps=7"])
    assert config.training.learning_rate == 1e-4
    assert config.training.max_steps == 7


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("model:\n  hidden: 3\n", [], r"Unknown key\(s\) \['hidden'\] in .*model"),
        ("optim:\n  lr: 1\n", [], r"Unknown section\(s\) \['optim'\]"),
        ("model:\n  hidden_size: big\n", [], "model.hidden_size must be int"),
        ("training:\n  max_steps: 0\n", [], "training.max_steps must be positive"),
        ("model:\n  hidden_size: 30\n  num_attention_heads: 4\n", [], "divisible"),
        ("diffusion:\n  schedule: quadratic\n", [], "diffusion.schedule"),
        ("- a\n- b\n", [], "must be a mapping"),
        ("", ["max_steps=3"], "section.key=value"),
        ("model: [\n", [], "not valid YAML"),
        ("diffusion:\n  prediction_type: eps\n", [], "diffusion.prediction_type"),
        ("data:\n  packing: true\n  bucket_by_length: true\n", [], "exclude each other"),
        ("diffusion:\n  output_prior: true\n", [], "diffusion.output_prior needs"),
        ("diffusion:\n  num_steps: 100\n  min_timestep: 100\n", [], "diffusion.min_timestep"),
        ("diffusion:\n  embedding_scale: -1\n", [], "diffusion.embedding_scale"),
        ("training:\n  embedding_lr_scale: 0\n", [], "training.embedding_lr_scale"),
    ],
)
def test_bad_configs_are_clear_errors(tmp_path, text, overrides, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_yaml(write(tmp_path, text), overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        RunConfig.from_yaml(tmp_path / "nope.yaml")
