"""Train a Diffusion-LM text diffusion model with DeepSpeed, top to bottom.

    config → tokenizer → data → model → deepspeed.initialize → loop (engine.backward, engine.step, EMA,
    metrics, checkpoints) → export of the EMA model with save_pretrained → samples

One process, no launcher (a CPU laptop):
    python train/diffusion.py --config configs/e2e-tiny.yaml
N processes or GPUs:
    deepspeed --num_gpus 2 train/diffusion.py --config configs/e2e-tiny.yaml --deepspeed configs/deepspeed/zero2.json
Resume from the newest checkpoint in training.output_dir:
    python train/diffusion.py --config configs/e2e-tiny.yaml --resume
A conditional model for classifier-free guidance, fine-tuned from an unconditional one:
    python train/diffusion.py --config configs/e2e-cfg.yaml
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from transformers import GenerationConfig

from textdiff import DiffusionLMLoss, NoiseSchedule, TextDiffusionConfig, TextDiffusionModel
from textdiff.data import BatchOrder, LengthBucketedOrder, frame_sequences, length_prior, load_corpus
from textdiff.e2e import parse_mr
from textdiff.training.arguments import load_run_config, training_arguments
from textdiff.training.distributed import cleanup_distributed, rank_zero_first, setup_distributed
from textdiff.training.engine import build_deepspeed_config
from textdiff.training.loop import TrainingLoop
from textdiff.training.tokenizer import load_or_train_tokenizer

logger = logging.getLogger("textdiff.train")


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    return training_arguments(__doc__, prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    """Train, export and sample; returns the export directory. `prog`: the command named in usage lines."""
    args = parse_args(argv, prog)
    run = load_run_config(args)
    train_cfg = run.training
    output_dir = Path(train_cfg.output_dir)

    # 1. Processes, devices, precision.
    dist = setup_distributed(train_cfg.threads)
    ds_config = build_deepspeed_config(train_cfg, dist, lr_scales=(1.0, train_cfg.embedding_lr_scale))
    torch.manual_seed(train_cfg.seed)

    # 2. Tokenizer and data: rank 0 trains the tokenizer on the training split and frames the corpus first (filling
    # the datasets cache); it saves the tokenizer only once the data has proved usable, so a bad corpus leaves no
    # output behind. The other ranks then load that tokenizer. The ids are held in memory as (N, L).
    condition_column = run.data.condition_column

    def frame(text) -> dict:
        """A split's framed ids (N, L), with its condition column when the model is conditional."""
        return frame_sequences(
            text,
            tokenizer,
            run.data.seq_len,
            text_column=run.data.text_column,
            packing=run.data.packing,
            keep_columns=(condition_column,) if condition_column else (),
        )[:]

    with rank_zero_first(dist):
        train_text = load_corpus(run.data.dataset, run.data.train_split, run.data.text_column)
        tokenizer = load_or_train_tokenizer(run, train_text, output_dir / "tokenizer", dist, resume=args.resume)
        train_framed = frame(train_text)
        train_ids = train_framed["input_ids"]  # (N, L)
        eval_ids = eval_framed = None
        if run.data.eval_split and train_cfg.eval_every:
            eval_framed = frame(load_corpus(run.data.dataset, run.data.eval_split, run.data.text_column))
            eval_ids = eval_framed["input_ids"]  # (N, L)
        if dist.rank == 0:
            tokenizer.save_pretrained(output_dir / "tokenizer")
    global_batch = train_cfg.micro_batch_size * train_cfg.gradient_accumulation_steps * dist.world_size
    # Bucketing by length: each batch holds sentences of nearly one length and is cut to its longest (framed
    # lengths: the tokens before the padding), and the model learns the prior p(ℓ) over those windows.
    train_lengths = (train_ids != tokenizer.pad_token_id).sum(1)  # (N,)
    if run.data.bucket_by_length:
        order = LengthBucketedOrder(train_lengths, global_batch, train_cfg.seed)
    else:
        order = BatchOrder(len(train_ids), global_batch, train_cfg.seed)
    logger.info(
        "Training on %d sequences of %d tokens; global batch %d.", len(train_ids), run.data.seq_len, global_batch
    )
    # Conditions (classifier-free guidance): every field=value pair of the training MRs, as (N, C) multi-hots.
    condition_labels = train_conditions = eval_conditions = None
    if condition_column:
        condition_labels = sorted(
            {f"{k}={v}" for mr in train_framed[condition_column] for k, v in parse_mr(mr).items()}
        )
        train_conditions = multi_hot(train_framed[condition_column], condition_labels)  # (N, C)
        if eval_framed is not None:
            eval_conditions = multi_hot(eval_framed[condition_column], condition_labels)
        logger.info("Conditional model on %d field=value conditions.", len(condition_labels))

    # 3. Model: the model config is built from the run config's model and diffusion sections.
    model_config = TextDiffusionConfig(
        vocab_size=len(tokenizer),
        embedding_dim=run.model.embedding_dim,
        hidden_size=run.model.hidden_size,
        num_hidden_layers=run.model.num_hidden_layers,
        num_attention_heads=run.model.num_attention_heads,
        intermediate_size=run.model.intermediate_size,
        max_position_embeddings=run.data.seq_len,
        hidden_dropout_prob=run.model.dropout,
        attention_dropout_prob=run.model.dropout,
        noise_schedule=run.diffusion.schedule,
        num_diffusion_steps=run.diffusion.num_steps,
        self_conditioning=run.diffusion.self_conditioning,
        prediction_type=run.diffusion.prediction_type,
        embedding_scale=run.diffusion.embedding_scale,
        min_timestep=run.diffusion.min_timestep,
        output_prior=run.diffusion.output_prior,
        time_warping=run.diffusion.time_warping,
        length_prior=length_prior(train_lengths, run.data.seq_len) if run.data.bucket_by_length else None,
        condition_labels=condition_labels,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        unk_token_id=tokenizer.unk_token_id,
    )
    model = TextDiffusionModel(model_config)
    if train_cfg.init_from:
        initialise_from(model, Path(train_cfg.init_from))
    schedule = NoiseSchedule.from_name(run.diffusion.schedule, run.diffusion.num_steps)
    objective = DiffusionLMLoss(
        schedule,
        self_conditioning_prob=run.diffusion.self_conditioning_prob if run.diffusion.self_conditioning else 0.0,
        condition_dropout=run.diffusion.condition_dropout,
        condition_keep=run.diffusion.condition_keep,
        stratified_timesteps=run.diffusion.stratified_timesteps,
        mse_weight=run.diffusion.mse_weight,
    )
    logger.info("Denoiser: %.2fM parameters.", sum(p.numel() for p in model.parameters()) / 1e6)
    if train_cfg.compile:
        model.compile()  # in place: parameter names, checkpoints and the EMA stay as they are

    # 4. The DeepSpeed engine (optimiser and learning-rate schedule come from the DeepSpeed config).
    import deepspeed

    if ds_config.get("zero_optimization", {}).get("stage") == 3:  # the rounding head reads E outside its forward
        deepspeed.zero.register_external_parameter(model.rounding, model.word_embeddings.weight)
    # The word embeddings may learn faster than the network (Plaid): their own parameter group, last, so that the
    # logged learning rate is the network's.
    embeddings = model.word_embeddings.weight
    groups = [{"params": [p for p in model.parameters() if p is not embeddings]}, {"params": [embeddings]}]
    # Positions per sequence: the window, or when bucketing about the mean sentence (a batch's longest is a little more).
    positions = float(train_lengths.float().mean()) if run.data.bucket_by_length else run.data.seq_len
    loop = TrainingLoop.start(
        model,
        groups,
        ds_config,
        train_cfg,
        dist,
        output_dir,
        order,
        positions,
        settings=run.to_dict(),
        model_config=model_config,
        resume=args.resume,
        group_names=("embeddings",),
    )
    engine, ema = loop.engine, loop.ema

    # 5. The loop (textdiff.training.loop.TrainingLoop): one iteration = one optimiser step over the micro batches.
    device = engine.device

    device_ids = train_ids.to(device)  # the corpus lives where the model does: no host copy in the step
    device_conditions = None if train_conditions is None else train_conditions.to(device)

    def micro_step(rows: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        """The objective on the training rows `rows`; t and ε from a generator on the device, seeded by the step."""
        width = int(train_lengths[rows].max()) if run.data.bucket_by_length else run.data.seq_len  # read on the host
        rows = rows.to(device, non_blocking=True)
        conditions = None if device_conditions is None else device_conditions[rows]  # (B, C)
        generator = torch.Generator(device=device).manual_seed(seed)
        ids = device_ids[rows, :width]  # (B, L'), L' = the batch's longest sentence when bucketing
        out = objective(engine, ids, generator=generator, conditions=conditions)
        return {"loss": out.loss, "mse": out.mse, "rounding": out.rounding, "prior": out.prior}

    def held_out() -> float:
        return held_out_loss(
            engine,
            objective,
            eval_ids,
            train_cfg,
            device,
            eval_conditions,
            tokenizer.pad_token_id,
            run.data.bucket_by_length,
        )

    loop.run(micro_step, held_out if eval_ids is not None else None)

    # 6. Export the EMA weights as a Hugging Face model, with the tokenizer, then write samples.
    export_dir = output_dir / "model"
    if dist.rank == 0:
        exported = TextDiffusionModel(model_config)
        exported.load_state_dict(ema.state_dict())
        exported.save_pretrained(export_dir)
        tokenizer.save_pretrained(export_dir)
        GenerationConfig(
            sampler=train_cfg.sample_sampler, num_inference_steps=train_cfg.sample_steps, clamp=train_cfg.sample_clamp
        ).save_pretrained(export_dir)
        logger.info("Exported the EMA model to %s.", export_dir)
        if train_cfg.num_samples:
            ids = exported.to(device).generate(
                num_return_sequences=train_cfg.num_samples,
                num_inference_steps=train_cfg.sample_steps,
                sampler=train_cfg.sample_sampler,
                clamp=train_cfg.sample_clamp,
                seed=train_cfg.seed,
            )
            samples = tokenizer.batch_decode(ids, skip_special_tokens=True)
            (output_dir / "samples.txt").write_text("\n".join(samples) + "\n", encoding="utf-8")
            logger.info(
                "Samples (%d denoising steps):\n%s", train_cfg.sample_steps, "\n".join(f"  {s}" for s in samples)
            )
    cleanup_distributed(dist)
    return export_dir


def multi_hot(mrs: list[str], labels: list[str]) -> torch.Tensor:
    """(N, C) float multi-hots of each meaning representation's field=value pairs over `labels`."""
    index = {label: i for i, label in enumerate(labels)}
    out = torch.zeros(len(mrs), len(labels))
    for row, mr in enumerate(mrs):
        for field, value in parse_mr(mr).items():
            if f"{field}={value}" in index:  # a pair never seen in training stays unset
                out[row, index[f"{field}={value}"]] = 1.0
    return out


def initialise_from(model: TextDiffusionModel, directory: Path) -> None:
    """Copy a saved model's weights (safetensors) into `model`; layers it lacks (conditions) keep their init."""
    from safetensors.torch import load_file

    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"training.init_from: {weights} does not exist; point it at a save_pretrained directory.")
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    if unexpected or any(not name.startswith("condition_embed") for name in missing):
        raise ValueError(
            f"training.init_from: {directory} does not fit the configured model (missing {missing}, unexpected "
            f"{unexpected}); use the same model section as the run that saved it."
        )
    logger.info("Initialised from %s (new: %s).", directory, missing or "none")


@torch.no_grad()
def held_out_loss(
    engine,
    objective: DiffusionLMLoss,
    eval_ids: torch.Tensor,
    train_cfg,
    device,
    conditions=None,
    pad_token_id: int = 0,
    bucket_by_length: bool = False,
) -> float:
    """Mean objective on the first eval_batches held-out batches, with fixed t and noise across evaluations (with
    bucketing: those sentences sorted by length, each batch cut to its longest, as in training)."""
    engine.eval()
    generator = torch.Generator().manual_seed(train_cfg.seed)
    size, count = train_cfg.micro_batch_size, train_cfg.eval_batches * train_cfg.micro_batch_size
    eval_ids = eval_ids[:count]
    lengths = (eval_ids != pad_token_id).sum(1)  # (N,)
    if bucket_by_length:
        order = torch.sort(lengths, stable=True).indices
        eval_ids, lengths = eval_ids[order], lengths[order]
        conditions = None if conditions is None else conditions[order]
    losses = []
    for start in range(0, len(eval_ids), size):
        batch_conditions = None if conditions is None else conditions[start : start + size].to(device)
        width = int(lengths[start : start + size].max()) if bucket_by_length else eval_ids.shape[1]
        out = objective(
            engine,
            eval_ids[start : start + size, :width].to(device),
            generator=generator,
            conditions=batch_conditions,
        )
        losses.append(out.loss.item())
    engine.train()
    return sum(losses) / len(losses)


if __name__ == "__main__":
    main()
