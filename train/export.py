"""Export a DeepSpeed checkpoint as a model directory (save_pretrained).

    python train/export.py --checkpoint runs/e2e-tiny/checkpoints/step00003200 --output runs/e2e-tiny/model

`textdiff export` runs the same; the code is textdiff/training/export.py.
"""

from textdiff.training.export import main

if __name__ == "__main__":
    main()
