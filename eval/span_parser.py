"""Train the span oracle (a constituency parser) from GUM's trees into the cache, and report its F1.

    python eval/span_parser.py

The code is textdiff/evaluation/span_parser.py; the control evaluation builds the oracle on first use.
"""

from textdiff.evaluation.span_parser import main

if __name__ == "__main__":
    main()
