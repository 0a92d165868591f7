"""Train the span oracle (a constituency parser) from GUM's trees into the cache, and print its held-out F1; or
write syntax-tree control targets with it.

    python eval/span_parser.py --gum ../shared/data/gum_const      # into $TEXTDIFF_CACHE/span_oracle
    python eval/span_parser.py --tree-targets data/control_targets/target_tree.json   # 200 E2E test sentences
    python eval/span_parser.py --agreement data/control_targets/target_spans.json     # the oracle on the targets
    python eval/span_parser.py --remade-spans data/control_targets/target_spans_remade.json   # its own span targets
    python eval/span_parser.py --independent    # train the second oracle (the cache's span_independent), held-out F1
    python eval/span_parser.py --faithful       # adapt the faithful oracle to the paper's spans, cross-validated
    python eval/span_parser.py --bilm runs/bilm # a context LM on E2E + GUM sentences (give it to --gum with --lm)

Training writes a new oracle (default: the cache), never the bundled one (data/span_oracle) that every score uses;
`--tree-targets`, `--remade-spans` and `--agreement` use the oracle in `--output` if given, else the one every score uses. To score with
a new oracle, point $TEXTDIFF_SPAN_ORACLE at it; to make it the bundled one, copy its three files into
data/span_oracle and remake the tree targets with it. The code is textdiff/evaluation/span_parser.py.
"""

import argparse
import hashlib
import json
from pathlib import Path

from textdiff.data import load_corpus
from textdiff.evaluation.context_lm import train_bilm
from textdiff.evaluation.controls import read_control_targets
from textdiff.evaluation.span_parser import (
    GUM,
    SpanOracle,
    adapt,
    bilm_sentences,
    cross_validated_agreement,
    faithful_base_dir,
    faithful_span_oracle_dir,
    gum_trees,
    heldout_f1,
    independent_span_oracle,
    independent_span_oracle_dir,
    remade_span_targets,
    span_oracle_cache_dir,
    span_oracle_dir,
    target_agreement,
    top_label,
    train,
    train_faithful_base,
    tree_targets,
)
from textdiff.resources import bundled
from textdiff.utils import write_text_atomic


def weights_digest(directory: Path) -> str:
    """SHA-256 of an oracle's weights: the provenance a target file's README records."""
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gum", type=Path, default=None, help="folder of GUM .ptb files: train the oracle")
    parser.add_argument(
        "--output", type=Path, default=None, help="the oracle's folder (default: $TEXTDIFF_CACHE/span_oracle)"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--characters",
        action="store_true",
        help="train the faithful oracle's base: words read by their characters too, hidden 200, tag dropout 0.3 "
        "(use with --epochs 8)",
    )
    parser.add_argument(
        "--lm", type=Path, default=None, help="--gum: the parser also reads this context LM's states (see --bilm)"
    )
    parser.add_argument(
        "--bilm",
        type=Path,
        default=None,
        help="train a bidirectional context LM on the E2E training references and GUM's training sentences into "
        "this folder (2 epochs, ≈ 12 min on one core)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="--faithful: the oracle to adapt (default: the cache's span_faithful_base, trained first if missing: "
        "a context LM and a GUM parser reading it, ≈ 40 min)",
    )
    parser.add_argument("--tree-targets", type=Path, default=None, help="write tree targets (JSON lines) to this file")
    parser.add_argument("--num-trees", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--agreement",
        type=Path,
        default=None,
        help="a span target file: how many of its spans the oracle finds in the targets' own sentences, by label",
    )
    parser.add_argument(
        "--remade-spans",
        type=Path,
        default=None,
        help="write Diffusion-LM's span targets redrawn from the oracle's parses of the same sentences to this file",
    )
    parser.add_argument(
        "--independent",
        action="store_true",
        help="train the second, independent oracle from "
        "GUM's gold tags (read with the independent tagger) and print its held-out F1",
    )
    parser.add_argument(
        "--faithful",
        action="store_true",
        help="adapt the oracle to the parser behind target_spans.json (the cache's span_faithful, or --output): its "
        "agreement on held-out targets by 5-fold cross-validation and its held-out GUM F1",
    )
    args = parser.parse_args()
    if not (
        args.gum
        or args.bilm
        or args.tree_targets
        or args.agreement
        or args.remade_spans
        or args.independent
        or args.faithful
    ):
        parser.error(
            "nothing to do: give --gum DIR (train the oracle), --bilm DIR, --independent, --tree-targets FILE, "
            "--remade-spans FILE, --faithful or --agreement FILE"
        )
    # Training writes a new oracle (the cache by default); the other actions read the one every score uses.
    directory = args.output or (span_oracle_cache_dir() if args.gum is not None else span_oracle_dir())
    if args.bilm is not None:
        print(json.dumps(train_bilm(bilm_sentences(GUM, args.seed), args.bilm, epochs=2, seed=args.seed), indent=2))
    if args.gum is not None:
        recipe = {"characters": True, "hidden": 200, "tag_dropout": 0.3} if args.characters else {}
        recipe |= {"lm": args.lm} if args.lm else {}
        print(json.dumps(train(args.gum, directory, args.epochs, **recipe), indent=2))
    if args.tree_targets is not None:
        texts = load_corpus(str(bundled("data/e2e")), "test")["text"]
        records = tree_targets(SpanOracle(directory), texts, args.num_trees, args.seed)
        write_text_atomic(args.tree_targets, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        heldout = json.loads((directory / "heldout.json").read_text())
        print(
            json.dumps(
                {
                    "targets": str(args.tree_targets),
                    "trees": len(records),
                    "seed": args.seed,
                    "oracle_sha256": weights_digest(directory),
                    "oracle_heldout": heldout,
                },
                indent=2,
            )
        )
    if args.independent:
        independent_span_oracle()
        print((independent_span_oracle_dir() / "heldout.json").read_text())
    if args.faithful:
        base, output = args.base or faithful_base_dir(), args.output or faithful_span_oracle_dir()
        if not (base / "model.safetensors").is_file():
            print(json.dumps(train_faithful_base(base), indent=2))  # the context LM and the parser reading it
        paper = read_control_targets(bundled("data/control_targets/target_spans.json"))
        agreement = cross_validated_agreement(base, paper)  # 5 adapted oracles, each scored on the targets it lacked
        adapt(base, paper, output)  # the faithful oracle: adapted to all 200
        report = {
            "agreement_cross_validated": agreement["found"] / agreement["total"],
            "agreement_per_fold": agreement["per_fold"],
            "agreement_by_label": {label: f"{c['found']}/{c['total']}" for label, c in agreement["by_label"].items()},
            "labelled_span_f1": heldout_f1(SpanOracle(output), gum_trees(GUM)["test"]),
            "adapted_from": str(base),
            "oracle_sha256": weights_digest(base),
            "adapted_on": "target_spans.json (Diffusion-LM's 200 span targets, one span each)",
        }
        write_text_atomic(output / "heldout.json", json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    if args.remade_spans is not None:
        paper = read_control_targets(bundled("data/control_targets/target_spans.json"))
        records = remade_span_targets(SpanOracle(directory), paper)
        write_text_atomic(args.remade_spans, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        kept = sum(r["spans"] == [[a, b, top_label(label)] for a, b, label in t.spans] for r, t in zip(records, paper))
        print(
            json.dumps(
                {
                    "targets": str(args.remade_spans),
                    "spans": len(records),
                    "kept_from_the_paper": kept,
                    "oracle_sha256": weights_digest(directory),
                },
                indent=2,
            )
        )
    if args.agreement is not None:
        counts = target_agreement(SpanOracle(directory), read_control_targets(args.agreement))
        for label, count in sorted(counts.items(), key=lambda item: -item[1]["total"]):
            print(f"{label}: {count['found']} / {count['total']} ({count['found'] / count['total']:.3f})")


if __name__ == "__main__":
    main()
