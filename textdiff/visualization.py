"""Watching text emerge from noise: renderings of a decoding trajectory (`GenerationOutput` with history).

A trajectory is, for one sequence, the rounded x0 estimate after every step (`history[:, b]`, S × L words)
and each word's rounding probability (`confidence[:, b]`). Three renderings, none needing a plotting library:

- `terminal_frames`: ANSI-coloured lines, one frame per step, for `textdiff generate --show-steps`;
- `trajectory_svg`: a heatmap picture — rows are steps (top: pure noise, bottom: the final text), columns are
  positions, each cell shows the word and is shaded by its confidence;
- `trajectory_html`: a self-contained page with a slider and a play button over every step.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass


@dataclass
class Trajectory:
    """One sequence's decoding, as words.

    Attributes:
        timesteps: (S,) training timesteps visited.
        words: S lists of L words (special tokens shown as written, padding as "").
        confidence: S lists of L floats in [0, 1].
    """

    timesteps: list[int]
    words: list[list[str]]
    confidence: list[list[float]]

    @classmethod
    def from_output(cls, output, tokenizer, index: int = 0) -> Trajectory:
        """Take sequence `index` of a `GenerationOutput`; positions after the final text's [END] are dropped."""
        final = output.sequences[index].tolist()
        length = final.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in final else len(final)
        words = [
            ["" if token == tokenizer.pad_token else token for token in tokenizer.convert_ids_to_tokens(row[:length])]
            for row in output.history[:, index].tolist()
        ]
        confidence = output.confidence[:, index, :length].tolist()
        return cls(timesteps=[int(t) for t in output.timesteps], words=words, confidence=confidence)

    def select(self, num_rows: int) -> list[int]:
        """Indices of `num_rows` steps spread over the trajectory, always including the first and last."""
        total = len(self.timesteps)
        if total <= num_rows:
            return list(range(total))
        return sorted({round(i * (total - 1) / (num_rows - 1)) for i in range(num_rows)})


def _shade(confidence: float) -> tuple[int, int, int]:
    """Light grey (unsure) to deep blue (settled)."""
    c = max(0.0, min(1.0, confidence))
    low, high = (236, 236, 236), (25, 70, 160)
    return tuple(round(a + (b - a) * c) for a, b in zip(low, high))


def terminal_frames(trajectory: Trajectory, color: bool = True, width: int | None = None) -> list[str]:
    """One line per step; with `color`, ANSI-coloured: settled words bright, unsure ones dim. With `width` (the
    terminal's columns), a line never wraps: its words stop with "…" before the edge, so redrawing a block of
    lines in place leaves no stale rows."""
    frames = []
    for t, words, confidence in zip(trajectory.timesteps, trajectory.words, trajectory.confidence):
        line, visible = f"t={t:>5} ", 8
        for word, c in zip(words, confidence):
            if not word:
                continue
            if width is not None and visible + 1 + len(word) > width - 3:
                line += " …"
                break
            if color:
                r, g, b = _shade(c) if c > 0.5 else (150, 150, 150)
                style = "1;" if c > 0.9 else ""
                word_text = f"\033[{style}38;2;{r};{g};{b}m{word}\033[0m"
            else:
                word_text = word
            line, visible = line + " " + word_text, visible + 1 + len(word)
        frames.append(line)
    return frames


def trajectory_svg(trajectory: Trajectory, num_rows: int = 16, title: str = "") -> str:
    """The heatmap picture (see the module docstring) as an SVG document."""
    rows = trajectory.select(num_rows)
    columns = len(trajectory.words[0])
    char, height, label_width, top = 7.2, 22, 70, 40 if title else 16
    widths = [max(28.0, 10 + char * max(len(trajectory.words[r][c]) for r in rows)) for c in range(columns)]
    x_of = [label_width + sum(widths[:c]) for c in range(columns)]
    width = label_width + sum(widths) + 10
    total_height = top + height * len(rows) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{total_height}" '
        'font-family="DejaVu Sans Mono, monospace" font-size="12">',
        f'<rect width="{width:.0f}" height="{total_height}" fill="white"/>',
    ]
    if title:
        parts.append(
            f'<text x="{label_width}" y="22" font-size="14" font-family="sans-serif">{html.escape(title)}</text>'
        )
    for row, step in enumerate(rows):
        y = top + row * height
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" fill="#555">t={trajectory.timesteps[step]}</text>'
        )
        for column in range(columns):
            c = trajectory.confidence[step][column]
            r, g, b = _shade(c)
            parts.append(
                f'<rect x="{x_of[column]:.1f}" y="{y}" width="{widths[column] - 2:.1f}" height="{height - 2}" '
                f'fill="rgb({r},{g},{b})" rx="3"/>'
            )
            word = trajectory.words[step][column]
            if word:
                colour = "white" if c > 0.55 else "#222"
                parts.append(
                    f'<text x="{x_of[column] + (widths[column] - 2) / 2:.1f}" y="{y + 15}" text-anchor="middle" '
                    f'fill="{colour}">{html.escape(word)}</text>'
                )
    legend_y = top + height * len(rows) + 18
    parts.append(
        f'<text x="{label_width}" y="{legend_y}" fill="#555" font-family="sans-serif">shade = rounding '
        "probability of the word (grey: unsure, blue: settled); rows: denoising steps, top to bottom</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def script_json(value) -> str:
    """JSON that is inert inside an HTML <script>: <, >, & and the JS line separators as \\u escapes, so that no
    text (a prompt, a corpus word such as "</script>") can end the script or start markup."""
    text = json.dumps(value, ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def trajectory_html(trajectory: Trajectory, title: str = "textdiff: text emerging from noise") -> str:
    """A self-contained page: a slider over every step, a play button, words shaded by confidence."""
    data = script_json(
        {
            "t": trajectory.timesteps,
            "w": trajectory.words,
            "c": [[round(c, 3) for c in row] for row in trajectory.confidence],
        }
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
#text span {{ display: inline-block; margin: 3px; padding: 4px 7px; border-radius: 4px; font-family: monospace;
  font-size: 18px; min-width: 1.2em; text-align: center; transition: background 0.15s; }}
#controls {{ margin: 1.5em 0; }} input[type=range] {{ width: 60%; }}
</style></head><body>
<h2>{html.escape(title)}</h2>
<p>Every position is denoised in parallel. Each box shows the word nearest to the model's current estimate of the
clean text; its shade is the rounding probability (grey: unsure, blue: settled).</p>
<div id="controls"><button id="play">▶ play</button>
<input id="step" type="range" min="0" value="0"> <span id="label"></span></div>
<div id="text"></div>
<script>
const D = {data};
const slider = document.getElementById("step"), text = document.getElementById("text");
slider.max = D.t.length - 1;
function shade(c) {{ const lo = [236,236,236], hi = [25,70,160];
  return "rgb(" + lo.map((a, i) => Math.round(a + (hi[i] - a) * c)).join(",") + ")"; }}
function show(i) {{
  text.innerHTML = "";
  D.w[i].forEach((w, j) => {{ const s = document.createElement("span"); const c = D.c[i][j];
    s.textContent = w || "\\u00a0"; s.style.background = shade(c); s.style.color = c > 0.55 ? "white" : "#222";
    text.appendChild(s); }});
  document.getElementById("label").textContent = "step " + (i + 1) + " / " + D.t.length + "   t = " + D.t[i];
}}
slider.oninput = () => show(+slider.value);
let timer = null;
document.getElementById("play").onclick = () => {{
  if (timer) {{ clearInterval(timer); timer = null; return; }}
  if (+slider.value >= D.t.length - 1) slider.value = 0;
  timer = setInterval(() => {{ if (+slider.value >= D.t.length - 1) {{ clearInterval(timer); timer = null; return; }}
    slider.value = +slider.value + 1; show(+slider.value); }}, Math.max(15, 6000 / D.t.length));
}};
show(0);
</script></body></html>
"""
