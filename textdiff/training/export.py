"""Export a training checkpoint as a Hugging Face model directory (safetensors + config + tokenizer).

    python train/export.py --checkpoint runs/e2e-tiny/checkpoints/step00002000 --output exported/
    python train/export.py --checkpoint runs/e2e-tiny/checkpoints/step00002000 --weights raw --output raw/

`--weights ema` (default) takes the checkpoint's EMA weights (ema.safetensors). `--weights raw` takes the
trained weights themselves: under ZeRO 1-3 the fp32 master weights consolidated from the DeepSpeed shards with
`zero_to_fp32` (any number of ranks); under ZeRO-0 the module's weights (`torch.load(weights_only=True)`). The run's tokenizer (`OUTPUT_DIR/tokenizer`, two levels above the checkpoint) is copied
unless `--tokenizer` names another.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

import textdiff  # noqa: F401  (registers the textdiff model type)
from textdiff.utils import OneLineErrors


def export(checkpoint: Path, output: Path, weights: str = "ema", tokenizer: Path | None = None) -> Path:
    """Write `output` with the model of `checkpoint` (a step directory) and its tokenizer; return `output`."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"--weights must be ema or raw, got {weights!r}.")
    if not (checkpoint / "COMPLETE").is_file():
        raise ValueError(f"{checkpoint} is not a complete textdiff checkpoint (no COMPLETE marker).")
    if not (checkpoint / "config.json").is_file():
        raise ValueError(f"{checkpoint} has no config.json (written by textdiff >= 0.1 training runs).")
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file; name a directory for the exported model.")
    # The tokenizer first: a missing or mismatched one is an error before anything is written.
    tokenizer_dir = tokenizer or checkpoint.parent.parent / "tokenizer"
    if not tokenizer_dir.is_dir():
        raise ValueError(
            f"No tokenizer at {tokenizer_dir} (a run keeps it in OUTPUT_DIR/tokenizer, beside checkpoints/); pass "
            "the run's tokenizer directory with --tokenizer."
        )
    try:
        loaded_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as error:
        raise ValueError(f"Cannot read the tokenizer in {tokenizer_dir} ({type(error).__name__}).") from None
    config = AutoConfig.from_pretrained(checkpoint)
    if len(loaded_tokenizer) != config.vocab_size:
        raise ValueError(
            f"The tokenizer at {tokenizer_dir} has {len(loaded_tokenizer)} entries but the checkpoint's model has "
            f"{config.vocab_size}; pass the tokenizer of the run that wrote {checkpoint} with --tokenizer."
        )
    model_class = AutoModel if config.model_type == "textdiff" else AutoModelForCausalLM
    model = model_class.from_config(config)
    if weights == "ema":
        try:
            state = load_file(checkpoint / "ema.safetensors")
        except Exception as error:
            raise ValueError(
                f"{checkpoint / 'ema.safetensors'} is missing, truncated or corrupted ({error})."
            ) from None
    elif any(checkpoint.glob("*zero_pp_rank_*_optim_states.pt")):  # ZeRO 1-3: fp32 weights live in the shards
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint.parent), tag=checkpoint.name)
    else:  # ZeRO-0: the module's own (fp32) weights; tensors only, no pickled objects are run
        import torch

        state = torch.load(checkpoint / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)["module"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {key for key in missing if key.endswith("lm_head.weight")}  # a tied head has no weights of its own
    if set(missing) - tied or unexpected:
        raise ValueError(f"{checkpoint} does not match its config: missing {missing}, unexpected {unexpected}.")
    if tied:
        model.tie_weights()
    model.save_pretrained(output)
    loaded_tokenizer.save_pretrained(output)
    return output


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    parser = OneLineErrors(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a step directory: .../checkpoints/stepNNNNNNNN")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema")
    parser.add_argument("--tokenizer", type=Path, default=None)
    args = parser.parse_args(argv)
    return export(args.checkpoint, args.output, args.weights, args.tokenizer)


if __name__ == "__main__":
    main()
