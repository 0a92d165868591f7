"""Train a latent classifier for classifier-guided control (field=value, parts of speech, spans).

    python train/classifier.py --model runs/e2e-tiny/model --task pos

`textdiff train-classifier` runs the same; the code is textdiff/training/classifier.py.
"""

from textdiff.training.classifier import main

if __name__ == "__main__":
    main()
