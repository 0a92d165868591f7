"""The optimiser-step loop every training script shares, its metrics log and its stop on SIGTERM / SIGINT."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from textdiff.utils import write_text_atomic

from .checkpoints import CheckpointManager
from .config import TrainingSection
from .distributed import DistInfo, cleanup_distributed, global_mean, step_seed
from .ema import ExponentialMovingAverage
from .engine import save_run_config

logger = logging.getLogger("textdiff.train")


class MetricsLog:
    """One JSON object per line (rank 0 only): the training curve a plot is made from."""

    def __init__(self, path: Path, dist: DistInfo, *, append: bool, resumed_at: int = 0) -> None:
        """append: continue the file of a resumed run, whose lines after step `resumed_at` (written after the
        checkpoint it resumes from, and about to be written again) are dropped, so that no step has two lines."""
        self.path = path
        self.enabled = dist.rank == 0
        if self.enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = []
            if append and path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        if json.loads(line).get("step", 0) <= resumed_at:
                            kept.append(line)
                    except (json.JSONDecodeError, AttributeError):  # a line cut by the kill: dropped
                        continue
            write_text_atomic(path, "".join(f"{line}\n" for line in kept))  # a reader never sees it half-written

    def write(self, **record: Any) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


class StopRequest:
    """SIGTERM and SIGINT ask the training loop to stop at the end of the current step, not at once.

    Clusters preempt jobs with SIGTERM (SLURM, Kubernetes) and kill them a grace period later; the loop then writes
    a complete checkpoint and exits, so `--resume` continues from that very step. The first signal restores the
    previous handlers, so a second one acts at once (Ctrl-C twice still kills).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def agreed(self, dist: DistInfo, device: torch.device) -> int | None:
        """The signal that asked to stop, on any rank (every rank then stops at the same step), or None."""
        if dist.world_size == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item()) or None


class TrainingLoop:
    """The optimiser-step loop every training script shares (nanoGPT's train.py loop, on DeepSpeed's engine).

        for each step:  for each micro batch of the step's rows: terms = micro_step(rows, seed)
                                                                 engine.backward(terms["loss"]); engine.step()
                        EMA update; metrics every log_every; held-out loss every eval_every;
                        a checkpoint when due, when training.max_minutes is spent, or on SIGTERM / SIGINT

    Nothing in a step waits for the device: the loss terms are summed where they are computed and read, with the
    check that the loss stayed finite, only when a metrics line, a held-out loss or a checkpoint is due. A
    non-finite loss therefore never reaches a checkpoint or an export: the run stops with a message naming the
    last good checkpoint (with checkpoint_every: 1, every step is checked before it is saved).

    Every script builds it with `TrainingLoop.start` (the DeepSpeed engine, the EMA, checkpoints, the metrics log
    and --resume, the same for the denoiser, the AR teacher and the latent classifiers) and gives `run` its own
    data and loss as `micro_step`.

    Args:
        engine, ema, checkpoints, metrics: The DeepSpeed engine, its EMA, the checkpoint manager, the metrics log.
        train_cfg, dist: The run config's training section and this process's place in the job.
        order: The resumable batch order over the training rows.
        tokens_per_sequence: Positions per training sequence, on average (for tokens/s).
        group_names: Names of the optimiser's parameter groups after the first, whose learning rates are logged
            as lr_NAME beside lr (the first group's).
    """

    def __init__(
        self,
        engine,
        ema: ExponentialMovingAverage,
        checkpoints: CheckpointManager,
        metrics: MetricsLog,
        train_cfg: TrainingSection,
        dist: DistInfo,
        order,
        tokens_per_sequence: float,
        group_names: tuple[str, ...] = (),
        start_step: int = 0,
    ) -> None:
        self.engine, self.ema, self.checkpoints, self.metrics = engine, ema, checkpoints, metrics
        self.group_names = group_names
        self.cfg, self.dist, self.order = train_cfg, dist, order
        self.tokens_per_step = order.global_batch_size * tokens_per_sequence
        self.start_step = start_step

    @classmethod
    def start(
        cls,
        model: torch.nn.Module,
        parameters,
        ds_config: dict[str, Any],
        train_cfg: TrainingSection,
        dist: DistInfo,
        output_dir: Path,
        order,
        tokens_per_sequence: float,
        *,
        settings: dict[str, Any],
        model_config=None,
        resume: bool = False,
        group_names: tuple[str, ...] = (),
    ) -> TrainingLoop:
        """Wrap `model` in a DeepSpeed engine (optimiser and schedule from `ds_config`) with its EMA, checkpoints in
        output_dir/checkpoints (each with `model_config`), output_dir/metrics.jsonl and output_dir/run_config.json
        (`settings` and what they resolved to); with `resume`, continue from the newest complete checkpoint."""
        import deepspeed

        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=parameters, config=ds_config)
        ema = ExponentialMovingAverage(engine, train_cfg.ema_decay)
        checkpoints = CheckpointManager(output_dir / "checkpoints", train_cfg.keep_checkpoints, dist, model_config)
        start_step = 0
        if resume:
            start_step = checkpoints.load(engine, ema)
            logger.info("Resumed at step %d.", start_step)
        metrics = MetricsLog(output_dir / "metrics.jsonl", dist, append=resume, resumed_at=start_step)
        save_run_config(output_dir, settings, ds_config, dist)
        return cls(
            engine, ema, checkpoints, metrics, train_cfg, dist, order, tokens_per_sequence, group_names, start_step
        )

    def run(
        self,
        micro_step: Callable[[torch.Tensor, int], dict[str, torch.Tensor]],
        held_out: Callable[[], float] | None = None,
        desc: str = "train",
    ) -> int:
        """Train from the start step to training.max_steps (or the time budget); return the last step done.

        Args:
            micro_step: (row indices (b,), seed) -> scalar tensors, "loss" (backpropagated) first, then any
                other terms to log. The global RNG is seeded with `seed` before the call (dropout).
            held_out: Returns the held-out loss; called every eval_every steps.

        Raises:
            FloatingPointError: The loss became NaN or infinite.
            SystemExit: SIGTERM or SIGINT arrived; a checkpoint of the last finished step was written first.
        """
        cfg, dist, engine, start_step = self.cfg, self.dist, self.engine, self.start_step
        device = engine.device
        started = time.monotonic()
        window: dict[str, torch.Tensor] = {}  # loss terms summed since the last metrics line
        window_steps = 0
        finite = torch.ones((), dtype=torch.bool, device=device)
        progress = tqdm(
            range(start_step, cfg.max_steps),
            initial=start_step,
            total=cfg.max_steps,
            disable=dist.rank != 0,
            desc=desc,
            dynamic_ncols=True,
        )
        done = start_step
        with StopRequest() as stop:
            for step in progress:
                engine.train()
                indices = self.order.indices(step, dist.rank, dist.world_size)  # this rank's G / world rows
                for micro, rows in enumerate(indices.split(cfg.micro_batch_size)):
                    seed = step_seed(cfg.seed, step, dist.rank * cfg.gradient_accumulation_steps + micro)
                    torch.manual_seed(seed)
                    terms = micro_step(rows, seed)
                    engine.backward(terms["loss"])
                    engine.step()
                    finite &= torch.isfinite(terms["loss"].detach())
                    for name, value in terms.items():
                        value = value.detach().float() / cfg.gradient_accumulation_steps
                        window[name] = window[name] + value if name in window else value
                self.ema.update(engine, step + 1)
                done, window_steps = step + 1, window_steps + 1

                signum = stop.agreed(dist, device)
                out_of_time = cfg.max_minutes is not None and time.monotonic() - started > 60 * cfg.max_minutes
                log_due = done % cfg.log_every == 0 if cfg.log_every else False
                eval_due = held_out is not None and cfg.eval_every and done % cfg.eval_every == 0
                save_due = (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or out_of_time or signum
                last = done == cfg.max_steps or out_of_time or signum
                if log_due or eval_due or save_due or last:
                    self._check_finite(finite, step)
                if log_due or last:
                    values = global_mean({k: v.item() / window_steps for k, v in window.items()}, dist, device)
                    elapsed = time.monotonic() - started
                    lr, *group_lrs = engine.get_lr()
                    self.metrics.write(
                        step=done,
                        epoch=round(self.order.epoch(done), 4),
                        **values,
                        lr=lr,
                        **{f"lr_{name}": value for name, value in zip(self.group_names, group_lrs)},
                        tokens_per_s=(done - start_step) * self.tokens_per_step / elapsed,
                        elapsed_s=round(elapsed, 1),
                    )
                    progress.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
                    window, window_steps = {}, 0
                if eval_due:
                    self.metrics.write(step=done, eval_loss=held_out())
                if save_due:
                    self.checkpoints.save(engine, self.ema, done)
                if out_of_time:
                    logger.info("Reached training.max_minutes=%s at step %d; stopping.", cfg.max_minutes, done)
                    break
                if signum:
                    progress.close()
                    name = signal.Signals(signum).name
                    logger.warning(
                        "Stopped by %s after step %d; the checkpoint %s is complete. Continue with the same command "
                        "and --resume.",
                        name,
                        done,
                        self.checkpoints.directory / self.checkpoints.tag(done),
                    )
                    cleanup_distributed(dist)
                    raise SystemExit(128 + signum)
        progress.close()
        self.checkpoints.ensure(engine, self.ema, done)
        return done

    def _check_finite(self, finite: torch.Tensor, step: int) -> None:
        """Stop every rank with one clear message when any rank's loss was NaN or infinite since the last check."""
        bad = (~finite).float().reshape(1)
        if self.dist.world_size > 1:
            torch.distributed.all_reduce(bad)
        if bad.item():
            last = self.checkpoints.latest_tag()
            raise FloatingPointError(
                f"The loss became NaN or infinite by step {step}; no checkpoint holds weights from after it. The "
                f"last good checkpoint is {self.checkpoints.directory / last if last else 'none'}. Lower "
                "training.learning_rate or raise training.warmup_steps, then continue with --resume."
            )
