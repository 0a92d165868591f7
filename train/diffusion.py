"""Train a text diffusion model (Diffusion-LM) with DeepSpeed.

    python train/diffusion.py --config configs/e2e-tiny.yaml
    deepspeed --num_gpus 2 train/diffusion.py --config configs/e2e.yaml --deepspeed configs/deepspeed/zero2.json

`textdiff train` runs the same; the code, top to bottom, is textdiff/training/diffusion.py.
"""

from textdiff.training.diffusion import main

if __name__ == "__main__":
    main()
