"""Distil a many-step text diffusion model into a few-step student (sequence-level knowledge distillation).

    python train/distill.py --config configs/e2e-tiny-distill.yaml

`textdiff distill` runs the same; the code, top to bottom, is textdiff/training/distill.py.
"""

from textdiff.training.distill import main

if __name__ == "__main__":
    main()
