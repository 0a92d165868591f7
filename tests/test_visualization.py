import torch

from tests.conftest import e2e_texts
from textdiff.tokenization import train_tokenizer
from textdiff.visualization import Trajectory, terminal_frames, trajectory_html, trajectory_svg


def make_trajectory(tiny_model):
    tokenizer = train_tokenizer(e2e_texts("train", 3000), "word", min_frequency=1)
    # the tiny model has 100 ids: every one is a word of this vocabulary
    output = tiny_model.generate(num_return_sequences=2, num_inference_steps=7, seed=0, return_dict_in_generate=True)
    return Trajectory.from_output(output, tokenizer, index=1), output


def test_trajectory_has_one_row_per_step_and_confidences_in_range(tiny_model):
    trajectory, output = make_trajectory(tiny_model)
    assert len(trajectory.words) == len(trajectory.confidence) == 7 == len(trajectory.timesteps)
    assert output.confidence.shape == (7, 2, 12)
    assert torch.all((output.confidence >= 0) & (output.confidence <= 1))


def test_renderings(tiny_model):
    trajectory, _ = make_trajectory(tiny_model)
    frames = terminal_frames(trajectory, color=False)
    assert len(frames) == 7 and frames[-1].startswith("t=    0")
    assert "\033[" in terminal_frames(trajectory)[0] and "\033[" not in frames[0]
    svg = trajectory_svg(trajectory, num_rows=4, title="demo")
    assert svg.startswith("<svg") and svg.count(">t=") == 4 and "demo" in svg
    page = trajectory_html(trajectory)
    assert page.startswith("<!doctype html>") and '"t": [99, 82, 66' in page


def test_select_keeps_first_and_last():
    trajectory = Trajectory(timesteps=list(range(50, 0, -1)), words=[["a"]] * 50, confidence=[[0.5]] * 50)
    rows = trajectory.select(5)
    assert rows[0] == 0 and rows[-1] == 49 and len(rows) == 5


def test_terminal_frames_never_wrap_at_the_terminal_width():
    """--show-steps redraws its block of lines in place; a line wider than the terminal would wrap and leave
    stale rows, so lines stop with an ellipsis before the edge."""
    import re

    trajectory = Trajectory(timesteps=[9, 0], words=[["restaurant"] * 20] * 2, confidence=[[0.95] * 20] * 2)
    for color in (True, False):
        for line in terminal_frames(trajectory, color=color, width=50):
            visible = re.sub(r"\033\[[0-9;]*m", "", line)
            assert len(visible) < 50 and visible.endswith("…")
