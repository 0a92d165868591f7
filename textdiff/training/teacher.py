"""Train the autoregressive teacher / baseline: a `GPT2LMHeadModel` built from a `GPT2Config` (no download),
on the same corpus, framing and tokenizer as the diffusion model, through the same DeepSpeed path.

Its uses: the "lm-score" of Diffusion-LM (perplexity of generated text under a teacher LM), and the
autoregressive baseline of equal size for speed and quality comparisons. The run config's model section
sizes it (n_embd = hidden_size, n_layer, n_head), so by default it matches the diffusion model's size.

    python train/teacher.py --config configs/e2e-tiny.yaml --tokenizer runs/e2e-tiny/model \
        --set training.output_dir=runs/e2e-tiny-teacher
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from textdiff.data import BatchOrder, frame_sequences, load_corpus
from textdiff.training.arguments import load_run_config, training_arguments
from textdiff.training.distributed import cleanup_distributed, rank_zero_first, setup_distributed
from textdiff.training.engine import build_deepspeed_config
from textdiff.training.loop import TrainingLoop

logger = logging.getLogger("textdiff.train")


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = training_arguments(__doc__, prog)
    parser.add_argument(
        "--tokenizer", required=True, help="directory of the tokenizer to share (the diffusion model's)"
    )
    return parser.parse_args(argv)


def causal_lm_loss(model, input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Next-token cross-entropy over [START] w_1 … w_n [END]; padding is neither attended to nor predicted."""
    attention_mask = (input_ids != pad_token_id).long()  # (B, L)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    """Train, export and sample the teacher; returns the export directory."""
    args = parse_args(argv, prog)
    run = load_run_config(args)
    train_cfg = run.training
    output_dir = Path(train_cfg.output_dir)

    # 1. Processes, the shared tokenizer, the data framed exactly as for the diffusion model.
    dist = setup_distributed(train_cfg.threads)
    ds_config = build_deepspeed_config(train_cfg, dist)
    torch.manual_seed(train_cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    with rank_zero_first(dist):
        train_text = load_corpus(run.data.dataset, run.data.train_split, run.data.text_column)
        train_ids = frame_sequences(
            train_text, tokenizer, run.data.seq_len, text_column=run.data.text_column, packing=run.data.packing
        )[:]["input_ids"]
    global_batch = train_cfg.micro_batch_size * train_cfg.gradient_accumulation_steps * dist.world_size
    order = BatchOrder(len(train_ids), global_batch, train_cfg.seed)

    # 2. The model, sized by the run config's model section.
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=run.data.seq_len,
        n_embd=run.model.hidden_size,
        n_layer=run.model.num_hidden_layers,
        n_head=run.model.num_attention_heads,
        n_inner=run.model.intermediate_size,
        resid_pdrop=run.model.dropout,
        embd_pdrop=run.model.dropout,
        attn_pdrop=run.model.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    logger.info("AR teacher: %.2fM parameters.", model.num_parameters() / 1e6)
    if train_cfg.compile:
        model.compile()  # in place: parameter names, checkpoints and the EMA stay as they are

    loop = TrainingLoop.start(
        model,
        model.parameters(),
        ds_config,
        train_cfg,
        dist,
        output_dir,
        order,
        run.data.seq_len,
        settings=run.to_dict(),
        model_config=config,
        resume=args.resume,
    )
    engine, ema = loop.engine, loop.ema

    # 3. The loop (textdiff.training.loop.TrainingLoop).
    device_ids = train_ids.to(engine.device)  # the corpus lives where the model does: no host copy in the step

    def micro_step(rows: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        input_ids = device_ids[rows.to(engine.device, non_blocking=True)]  # (B, L)
        return {"loss": causal_lm_loss(engine, input_ids, tokenizer.pad_token_id)}

    loop.run(micro_step, desc="teacher")

    # 4. Export the EMA weights with the tokenizer.
    export_dir = output_dir / "model"
    if dist.rank == 0:
        exported = GPT2LMHeadModel(config)
        # The tied head is not a parameter of its own (the EMA has only the embedding); nothing else may be missing.
        result = exported.load_state_dict(ema.state_dict(), strict=False)
        if set(result.missing_keys) - {"lm_head.weight"} or result.unexpected_keys:
            raise RuntimeError(
                f"The EMA weights do not match GPT2LMHeadModel: missing {result.missing_keys}, unexpected "
                f"{result.unexpected_keys}."
            )
        exported.tie_weights()
        exported.save_pretrained(export_dir)
        tokenizer.save_pretrained(export_dir)
        logger.info("Exported the AR teacher to %s.", export_dir)
    cleanup_distributed(dist)
    return export_dir


if __name__ == "__main__":
    main()
