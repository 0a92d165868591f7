"""Train the autoregressive teacher / baseline (GPT-2 architecture) on the same corpus and tokenizer.

    python train/teacher.py --config configs/e2e-teacher.yaml --tokenizer runs/e2e-tiny/model

`textdiff train-teacher` runs the same; the code is textdiff/training/teacher.py.
"""

from textdiff.training.teacher import main

if __name__ == "__main__":
    main()
