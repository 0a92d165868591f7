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
import json
import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from textdiff.data import BatchOrder, frame_sequences, load_corpus
from train.common import (
    CheckpointManager,
    ExponentialMovingAverage,
    MetricsLog,
    build_deepspeed_config,
    check_finite,
    cleanup_distributed,
    global_mean,
    load_run_config,
    rank_zero_first,
    setup_distributed,
    step_seed,
    training_arguments,
)

logger = logging.getLogger("textdiff.train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = training_arguments(__doc__)
    parser.add_argument(
        "--tokenizer", required=True, help="directory of the tokenizer to share (the diffusion model's)"
    )
    return parser.parse_args(argv)


def causal_lm_loss(model, input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Next-token cross-entropy over [START] w_1 … w_n [END]; padding is neither attended to nor predicted."""
    attention_mask = (input_ids != pad_token_id).long()  # (B, L)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


def main(argv: list[str] | None = None) -> Path:
    """Train, export and sample the teacher; returns the export directory."""
    args = parse_args(argv)
    run = load_run_config(args)
    train_cfg = run.training
    output_dir = Path(train_cfg.output_dir)

    # 1. Processes, the shared tokenizer, the data framed exactly as for the diffusion model.
    dist = setup_distributed(train_cfg.threads)
    logging.basicConfig(level=logging.INFO if dist.rank == 0 else logging.WARNING, format="%(message)s")
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

    import deepspeed

    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds_config)
    ema = ExponentialMovingAverage(engine, train_cfg.ema_decay)
    checkpoints = CheckpointManager(output_dir / "checkpoints", train_cfg.keep_checkpoints, dist, config)
    start_step = checkpoints.load(engine, ema) if args.resume else 0
    metrics = MetricsLog(output_dir / "metrics.jsonl", dist, append=args.resume)
    if dist.rank == 0:
        (output_dir / "run_config.json").write_text(json.dumps(run.to_dict(), indent=2))

    # 3. The loop.
    started = time.monotonic()
    progress = tqdm(
        range(start_step, train_cfg.max_steps),
        initial=start_step,
        total=train_cfg.max_steps,
        disable=dist.rank != 0,
        desc="teacher",
        dynamic_ncols=True,
    )
    step = start_step
    for step in progress:
        engine.train()
        rank_batch = train_ids[order.indices(step, dist.rank, dist.world_size)]
        total = 0.0
        for micro, input_ids in enumerate(rank_batch.split(train_cfg.micro_batch_size)):
            torch.manual_seed(
                step_seed(train_cfg.seed, step, dist.rank * train_cfg.gradient_accumulation_steps + micro)
            )
            loss = causal_lm_loss(engine, input_ids.to(engine.device), tokenizer.pad_token_id)
            check_finite(loss, dist, step, checkpoints)
            engine.backward(loss)
            engine.step()
            total += loss.item() / train_cfg.gradient_accumulation_steps
        ema.update(engine, step + 1)
        total = global_mean({"loss": total}, dist, engine.device)["loss"]
        done = step + 1
        progress.set_postfix(loss=f"{total:.3f}")
        if done % train_cfg.log_every == 0 or done == train_cfg.max_steps:
            elapsed = time.monotonic() - started
            metrics.write(step=done, loss=total, lr=engine.get_lr()[0], elapsed_s=round(elapsed, 1))
        if checkpoints.end_of_step(engine, ema, train_cfg, done, started):
            break
    progress.close()
    checkpoints.ensure(engine, ema, step + 1 if train_cfg.max_steps > start_step else start_step)

    # 4. Export the EMA weights with the tokenizer.
    export_dir = output_dir / "model"
    if dist.rank == 0:
        exported = GPT2LMHeadModel(config)
        exported.load_state_dict(ema.state_dict(), strict=False)  # the tied head is not a separate parameter
        exported.tie_weights()
        exported.save_pretrained(export_dir)
        tokenizer.save_pretrained(export_dir)
        logger.info("Exported the AR teacher to %s.", export_dir)
    cleanup_distributed(dist)
    return export_dir


if __name__ == "__main__":
    main()
