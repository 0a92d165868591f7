"""Milliseconds per optimiser step of the denoiser (forward, backward, AdamW) for a few shapes, on this CPU.

The recipe ablation compares models at equal time: a row of a cheaper shape gets proportionally more steps.
This measures the ratio, with the training objective of the default recipe on random token ids of the mean
bucketed E2E width (24 positions), one thread unless told otherwise.

    python bench/step_cost.py                                   # the shapes of docs/RESULTS.md
    python bench/step_cost.py --shapes 128x4x64 64x4x32 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from textdiff import DiffusionLMLoss, NoiseSchedule, TextDiffusionConfig, TextDiffusionModel


def step_ms(hidden: int, layers: int, batch: int, width: int, steps: int, self_conditioning: bool) -> tuple[float, int]:
    """(mean wall-clock milliseconds of one optimiser step after 5 warm-up steps, parameters)."""
    config = TextDiffusionConfig(
        vocab_size=821,
        embedding_dim=16,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=40,
        hidden_dropout_prob=0.0,
        attention_dropout_prob=0.0,
        prediction_type="logits",
        embedding_scale=4.0,
        min_timestep=100,
        self_conditioning=self_conditioning,
    )
    model = TextDiffusionModel(config)
    objective = DiffusionLMLoss(
        NoiseSchedule.from_name("sqrt", 2000),
        stratified_timesteps=True,
        self_conditioning_prob=0.5 if self_conditioning else 0.0,
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 821, (batch, width), generator=generator)
    for step in range(5 + steps):
        if step == 5:
            started = time.perf_counter()
        objective(model, ids, generator=generator).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return 1000 * (time.perf_counter() - started) / steps, model.num_parameters()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["128x4x64", "128x2x64", "96x4x64", "64x4x64", "48x4x64", "64x6x64", "128x4x32", "64x4x32", "64x4x16"],
        help="HIDDENxLAYERSxBATCH; the first is the reference of the ratios",
    )
    parser.add_argument("--width", type=int, default=24, help="positions per sequence")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--self-conditioning", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reference = None
    print(f"{args.threads} thread(s), {args.width} positions, {args.steps} timed steps each")
    print("| hidden × layers | batch | parameters | ms / step | × reference | steps in the reference's 2,000 |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes:
        hidden, layers, batch = (int(part) for part in shape.split("x"))
        ms, params = step_ms(hidden, layers, batch, args.width, args.steps, args.self_conditioning)
        reference = reference or ms
        print(
            f"| {hidden} × {layers} | {batch} | {params / 1e6:.2f}M | {ms:.1f} | {ms / reference:.2f} | "
            f"{round(2000 * reference / ms, -1):.0f} |"
        )


if __name__ == "__main__":
    main()
