"""Draw the loss curve of a training run's metrics.jsonl as a self-contained SVG (no plotting library needed).

python docs/plot_loss.py runs/e2e-tiny/metrics.jsonl docs/e2e-tiny-loss.svg --title "e2e-tiny"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WIDTH, HEIGHT, PAD = 640, 360, 56
SERIES = {"loss": "#1f77b4", "mse": "#2ca02c", "rounding": "#ff7f0e", "eval_loss": "#d62728"}


def smooth(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics")
    parser.add_argument("output")
    parser.add_argument("--title", default="training loss")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window over logged points")
    args = parser.parse_args()

    records = [json.loads(line) for line in Path(args.metrics).read_text().splitlines() if line.strip()]
    curves = {}
    for name in SERIES:
        points = [(r["step"], r[name]) for r in records if name in r]
        if points:
            steps, values = zip(*points)
            curves[name] = list(zip(steps, smooth(list(values), 1 if name == "eval_loss" else args.smooth)))
    max_step = max(step for curve in curves.values() for step, _ in curve)
    top = max(value for curve in curves.values() for _, value in curve[min(len(curve) - 1, 2) :])
    x = lambda s: PAD + (WIDTH - 2 * PAD) * s / max_step  # noqa: E731
    y = lambda v: HEIGHT - PAD - (HEIGHT - 2 * PAD) * min(v, top) / top  # noqa: E731

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{args.title}</text>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="black"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="black"/>',
    ]
    for i in range(5):
        value, step = top * i / 4, max_step * i / 4
        parts.append(f'<text x="{PAD - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>')
        parts.append(f'<line x1="{PAD}" y1="{y(value):.1f}" x2="{WIDTH - PAD}" y2="{y(value):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{x(step):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{int(step)}</text>')
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">optimizer step</text>')
    for row, (name, curve) in enumerate(curves.items()):
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in curve)
        parts.append(f'<polyline fill="none" stroke="{SERIES[name]}" stroke-width="1.5" points="{path}"/>')
        parts.append(
            f'<text x="{WIDTH - PAD - 4}" y="{PAD + 14 * row}" text-anchor="end" fill="{SERIES[name]}">{name}</text>'
        )
    parts.append("</svg>")
    Path(args.output).write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
