"""Train the span oracle (a constituency parser) from GUM's trees into the cache, and print its held-out F1.

    python eval/span_parser.py --gum ../shared/data/gum_const      # into $TEXTDIFF_CACHE/span_oracle

The code is textdiff/evaluation/span_parser.py; the control evaluation builds the oracle on first use.
"""

import argparse
import json
from pathlib import Path

from textdiff.evaluation.span_parser import span_oracle_dir, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gum", type=Path, required=True, help="folder of GUM .ptb files")
    parser.add_argument("--output", type=Path, default=None, help="default: $TEXTDIFF_CACHE/span_oracle")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(train(args.gum, args.output or span_oracle_dir(), args.epochs), indent=2))


if __name__ == "__main__":
    main()
