import pytest

from train.config import RunConfig


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load():
    tiny = RunConfig.from_yaml("configs/e2e-tiny.yaml")
    assert tiny.model.embedding_dim == 16 and tiny.diffusion.schedule == "sqrt"
    paper = RunConfig.from_yaml("configs/e2e.yaml")
    assert paper.model.hidden_size == 768 and paper.training.max_steps == 200_000


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
    ],
)
def test_bad_configs_are_clear_errors(tmp_path, text, overrides, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_yaml(write(tmp_path, text), overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        RunConfig.from_yaml(tmp_path / "nope.yaml")
