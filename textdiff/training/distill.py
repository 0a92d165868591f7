"""Distil a many-step text diffusion model into a few-step student, top to bottom (textdiff.distillation).

    run config → the teacher → its texts (the student's corpus, cached) → the student (the teacher's network and
    weights) → deepspeed.initialize → loop (FewStepDistillationLoss) → export of the EMA student, whose generation
    config says how it decodes (K renoise steps at x̂0 temperature τ) → samples

    python train/distill.py --config configs/e2e-tiny-distill.yaml
    textdiff distill --config configs/e2e-tiny-distill.yaml --set distillation.student_steps=4

The run config's distillation section names the teacher and the student's decoding; its training section the
optimiser, steps and output; the model, diffusion, data and tokenizer sections do not apply (the student is the
teacher's architecture, with the teacher's tokenizer, windows and length prior).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from transformers import GenerationConfig

from textdiff.data import BatchOrder, LengthBucketedOrder, frame_sequences, load_corpus
from textdiff.distillation import FewStepDistillationLoss, student_timesteps, write_teacher_corpus
from textdiff.loading import load_pretrained
from textdiff.modeling import TextDiffusionModel
from textdiff.schedules import NoiseSchedule
from textdiff.training.arguments import load_run_config, training_arguments
from textdiff.training.distributed import cleanup_distributed, rank_zero_first, setup_distributed
from textdiff.training.engine import build_deepspeed_config
from textdiff.training.loop import TrainingLoop

logger = logging.getLogger("textdiff.train")

STUDENT_SAMPLER = "renoise"  # the student decodes by predict-and-renoise on its soft x̂0, as it was trained to


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    return training_arguments(__doc__, prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> Path:
    """Write the teacher's texts (or reuse them), train the student, export it; returns the export directory."""
    args = parse_args(argv, prog)
    run = load_run_config(args)
    train_cfg, distill = run.training, run.distillation
    output_dir = Path(train_cfg.output_dir)
    if distill.teacher is None:
        raise ValueError("distillation.teacher is not set; name the model to distil, e.g. runs/e2e-tiny/model.")

    # 1. Processes, devices, precision.
    dist = setup_distributed(train_cfg.threads)
    ds_config = build_deepspeed_config(train_cfg, dist, lr_scales=(1.0, train_cfg.embedding_lr_scale))
    torch.manual_seed(train_cfg.seed)

    # 2. The teacher and its texts: rank 0 decodes them with the teacher's saved decoding settings (reused when the
    # same teacher and settings made them), the other ranks then read them. Framed as in training: (N, L).
    teacher, tokenizer = load_pretrained(distill.teacher)
    if teacher.config.prediction_type != "logits":
        raise ValueError(
            f"{distill.teacher} regresses x0 (prediction_type {teacher.config.prediction_type!r}); distillation "
            "needs a model that classifies the clean word (prediction_type: logits)."
        )
    schedule = NoiseSchedule.from_name(teacher.config.noise_schedule, teacher.config.num_diffusion_steps)
    try:  # before the teacher's texts, so that a bad setting costs no decoding
        timesteps = student_timesteps(schedule, distill.student_steps, teacher.config.min_timestep)
    except ValueError as error:
        raise ValueError(f"distillation.student_steps: {error}") from None
    corpus = output_dir / "teacher_corpus"
    with rank_zero_first(dist):
        if dist.rank == 0:
            logger.info("The teacher writes %d texts to %s (or reuses them).", distill.num_teacher_samples, corpus)
            written = write_teacher_corpus(
                teacher.to(torch.device("cuda", dist.local_rank) if dist.on_gpu else "cpu"),
                tokenizer,
                corpus,
                distill.num_teacher_samples,
                distill.teacher_seed,
                progress=lambda done, total: logger.info("Teacher texts: %d / %d.", done, total),
            )
            if not written:
                logger.info("Reusing the teacher's texts in %s.", corpus)
        texts = load_corpus(str(corpus), "train")
        train_ids = frame_sequences(texts, tokenizer, teacher.config.max_position_embeddings)[:]["input_ids"]
    bucketed = teacher.config.length_prior is not None  # the teacher was trained on length buckets: so is the student
    lengths = (train_ids != tokenizer.pad_token_id).sum(1)  # (N,)
    global_batch = train_cfg.micro_batch_size * train_cfg.gradient_accumulation_steps * dist.world_size
    order = LengthBucketedOrder(lengths, global_batch, train_cfg.seed) if bucketed else BatchOrder(
        len(train_ids), global_batch, train_cfg.seed
    )
    logger.info("Distilling on %d teacher texts; global batch %d.", len(train_ids), global_batch)

    # 3. The student: the teacher's network and weights, trained at the K timesteps it will decode on.
    student = TextDiffusionModel(teacher.config)
    student.load_state_dict(teacher.state_dict())
    del teacher
    objective = FewStepDistillationLoss(schedule, timesteps, distill.rollout_prob, distill.x0_temperature)
    logger.info("Student: %d decoding steps at timesteps %s.", distill.student_steps, timesteps.tolist())

    # 4. The DeepSpeed engine and the shared loop; the embeddings keep their own learning-rate group.
    embeddings = student.word_embeddings.weight
    groups = [{"params": [p for p in student.parameters() if p is not embeddings]}, {"params": [embeddings]}]
    positions = float(lengths.float().mean()) if bucketed else float(train_ids.shape[1])
    loop = TrainingLoop.start(student, groups, ds_config, train_cfg, dist, output_dir, order, positions,
                              settings=run.to_dict(), model_config=student.config, resume=args.resume,
                              group_names=("embeddings",))  # fmt: skip
    engine, ema, device = loop.engine, loop.ema, loop.engine.device
    device_ids = train_ids.to(device)

    def micro_step(rows: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        width = int(lengths[rows].max()) if bucketed else train_ids.shape[1]  # the batch's longest text
        generator = torch.Generator(device=device).manual_seed(seed)
        out = objective(engine, device_ids[rows.to(device), :width], generator=generator)
        return {"loss": out.loss, "rounding": out.rounding}

    loop.run(micro_step, None)

    # 5. Export the EMA student with the tokenizer and its decoding settings, then write samples.
    export_dir = output_dir / "model"
    if dist.rank == 0:
        exported = TextDiffusionModel(student.config)
        exported.load_state_dict(ema.state_dict())
        exported.save_pretrained(export_dir)
        tokenizer.save_pretrained(export_dir)
        decoding = {
            "sampler": STUDENT_SAMPLER,
            "num_inference_steps": distill.student_steps,
            "clamp": False,
            "x0_temperature": distill.x0_temperature,
        }
        GenerationConfig(**decoding).save_pretrained(export_dir)
        logger.info("Exported the EMA student to %s (decoding: %s).", export_dir, decoding)
        if train_cfg.num_samples:
            ids = exported.to(device).generate(num_return_sequences=train_cfg.num_samples, seed=train_cfg.seed,
                                               **decoding)  # fmt: skip
            samples = tokenizer.batch_decode(ids, skip_special_tokens=True)
            (output_dir / "samples.txt").write_text("\n".join(samples) + "\n", encoding="utf-8")
            logger.info("Samples (%d steps):\n%s", distill.student_steps, "\n".join(f"  {s}" for s in samples))
    cleanup_distributed(dist)
    return export_dir


if __name__ == "__main__":
    main()
