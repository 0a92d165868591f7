"""The pieces every textdiff training script shares: process setup, the DeepSpeed config, the tokenizer,
EMA weights, checkpoints and the metrics log."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from textdiff.tokenization import train_tokenizer
from train.config import RunConfig, TrainingSection

logger = logging.getLogger("textdiff.train")


def training_arguments(description: str) -> argparse.ArgumentParser:
    """The flags every training script takes (the `deepspeed` launcher adds --local_rank)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML run config, e.g. configs/e2e-tiny.yaml")
    parser.add_argument("--deepspeed", dest="deepspeed_config", help="DeepSpeed JSON (overrides the run config's)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one run-config value, e.g. --set training.max_steps=50 (repeatable)",
    )
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def load_run_config(args: argparse.Namespace) -> RunConfig:
    """The run config with the command line's --set overrides and --deepspeed applied."""
    overrides = list(args.overrides)
    if args.deepspeed_config:
        overrides.append(f"training.deepspeed_config={args.deepspeed_config}")
    return RunConfig.from_yaml(args.config, overrides)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    on_gpu: bool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_distributed(threads: int | None = None) -> DistInfo:
    """Join (or, with no launcher, create) the process group: gloo on CPU, NCCL on GPUs.

    Without a launcher the environment of a one-process job is filled in, so the same script runs on a laptop.
    Each CPU process gets cores / local processes threads unless `threads` says otherwise.
    """
    if "RANK" not in os.environ:
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(free_port()),
            RANK="0",
            WORLD_SIZE="1",
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
        )
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = accelerator.device_name() != "cpu"
    if on_gpu:
        accelerator.set_device(local_rank)
    deepspeed.init_distributed()
    world_size = torch.distributed.get_world_size()
    if not on_gpu:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    return DistInfo(torch.distributed.get_rank(), world_size, local_rank, on_gpu)


def cleanup_distributed(dist: DistInfo) -> None:
    """Wait for every rank, then remove this rank's DeepSpeed shared-memory all-reduce buffer from /dev/shm
    (DeepSpeed's CPU communication leaves one ~66 MB file per process behind)."""
    barrier(dist)
    address, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    for buffer in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{address}_{port}_{dist.rank}"):
        buffer.unlink(missing_ok=True)


def barrier(dist: DistInfo) -> None:
    if dist.world_size > 1:
        torch.distributed.barrier()


@contextlib.contextmanager
def rank_zero_first(dist: DistInfo) -> Iterator[None]:
    """Run the block on rank 0 first (it fills caches and writes files), then on the other ranks."""
    if dist.rank != 0:
        barrier(dist)
    yield
    if dist.rank == 0:
        barrier(dist)


def step_seed(seed: int, step: int, shard: int) -> int:
    """A seed that is a pure function of the position in training, so a resumed run draws the same noise.

    `shard` = rank × gradient_accumulation_steps + micro-batch index: the position of the micro batch within the
    global batch, so 1 process accumulating 2 micro batches and 2 processes with 1 each draw the same noise for
    the same examples.
    """
    return ((seed * 1_000_003 + step) * 1_009 + shard) % (2**63)


def global_mean(values: dict[str, float], dist: DistInfo, device: torch.device) -> dict[str, float]:
    """The mean over ranks of per-rank scalars (what the logs report for the whole global batch)."""
    if dist.world_size == 1:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return {name: value / dist.world_size for name, value in zip(values, tensor.tolist())}


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """training.precision as run: "auto" is bf16 on GPUs and fp32 on CPU (fp16 is unsupported there, bf16 slow)."""
    if precision == "auto":
        return "bf16" if on_gpu else "fp32"
    return precision


def build_deepspeed_config(
    train_cfg: TrainingSection, dist: DistInfo, lr_scales: tuple[float, ...] = (1.0,)
) -> dict[str, Any]:
    """The DeepSpeed JSON, completed from the run config (the single source of batch size, learning rate,
    schedule and precision): micro batch, accumulation, AdamW (torch's fused kernel on GPUs), warm-up then linear
    decay to 0, and bf16 or fp32 as training.precision resolves.

    `lr_scales`: one factor on training.learning_rate for each parameter group the script will pass to
    `deepspeed.initialize`, in order (the schedule sets every group's learning rate at each step)."""
    path = Path(train_cfg.deepspeed_config)
    if not path.is_file():
        raise ValueError(f"DeepSpeed config {path} does not exist; use one of configs/deepspeed/zero{{0,1,2,3}}.json.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"DeepSpeed config {path} is not valid JSON: {error}") from None
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "bf16", "fp16"):
        if key in config:
            raise ValueError(
                f"{path} sets {key!r}; batch sizes and precision come from the run config's training section."
            )
    config["train_micro_batch_size_per_gpu"] = train_cfg.micro_batch_size
    config["gradient_accumulation_steps"] = train_cfg.gradient_accumulation_steps
    optimizer = config.setdefault("optimizer", {"type": "AdamW", "params": {"torch_adam": True}})
    params = optimizer.setdefault("params", {})
    params.update(lr=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay)
    if dist.on_gpu and params.get("torch_adam"):
        params.setdefault("fused", True)  # one kernel for the whole update instead of a few per tensor
    config["scheduler"] = {
        "type": "WarmupDecayLR",
        "params": {
            "warmup_min_lr": 0.0,
            "warmup_max_lr": [train_cfg.learning_rate * scale for scale in lr_scales],  # one per group
            "warmup_num_steps": max(1, train_cfg.warmup_steps),  # DeepSpeed rejects 0; one step is no warm-up
            "warmup_type": "linear",
            "total_num_steps": train_cfg.max_steps,
        },
    }
    config["bf16"] = {"enabled": resolve_precision(train_cfg.precision, dist.on_gpu) == "bf16"}
    config.setdefault("steps_per_print", 10**9)
    return config


def save_run_config(output_dir: Path, run: RunConfig, ds_config: dict[str, Any], dist: DistInfo) -> None:
    """run_config.json: the run config as given, and what it resolved to on this machine (precision, device)."""
    if dist.rank != 0:
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = {
        "precision": "bf16" if ds_config["bf16"]["enabled"] else "fp32",
        "device": "cuda" if dist.on_gpu else "cpu",
        "world_size": dist.world_size,
        "global_batch": run.training.micro_batch_size * run.training.gradient_accumulation_steps * dist.world_size,
        "torch": torch.__version__,
    }
    (output_dir / "run_config.json").write_text(json.dumps({**run.to_dict(), "resolved": resolved}, indent=2))


def load_or_train_tokenizer(
    run: RunConfig, corpus: datasets.Dataset, path: Path, dist: DistInfo, *, resume: bool
) -> PreTrainedTokenizerBase:
    """The run's tokenizer: loaded from tokenizer.path, or (resuming) from the run's own copy at `path`, or trained
    on the training split by rank 0 (which saves it to `path` once the data is framed; the other ranks, which
    come after rank 0, load it from there)."""
    if run.tokenizer.path:
        return AutoTokenizer.from_pretrained(run.tokenizer.path)
    if dist.rank == 0 and not (resume and path.is_dir()):
        tokenizer = train_tokenizer(
            corpus[run.data.text_column],
            run.tokenizer.kind,
            min_frequency=run.tokenizer.min_frequency,
            vocab_size=run.tokenizer.vocab_size,
            model_max_length=run.data.seq_len,
        )
        logger.info("Trained a %s tokenizer with %d entries.", run.tokenizer.kind, len(tokenizer))
        return tokenizer
    return AutoTokenizer.from_pretrained(path)


class ExponentialMovingAverage:
    """EMA of the weights, θ̄ ← d·θ̄ + (1 − d)·θ with the warm-up d = min(decay, (1 + n) / (10 + n)), kept in fp32.

    Under ZeRO-3 the partitioned parameters are gathered for each update. The model's persistent buffers (state
    that is fitted, not trained: e.g. the time warping's statistics) are not averaged: `state_dict` gives their
    current values beside the averaged weights, so that it loads into a fresh model as a whole.
    """

    def __init__(self, engine, decay: float) -> None:
        self.decay = decay
        self.zero3 = engine.zero_optimization_stage() == 3
        with self._gathered(engine):
            self.shadow = {name: p.detach().float().clone() for name, p in engine.module.named_parameters()}
        persistent = engine.module.state_dict().keys()
        self.buffers = {name: b for name, b in engine.module.named_buffers() if name in persistent}  # live views

    def _gathered(self, engine):
        if not self.zero3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)

    @torch.no_grad()
    def update(self, engine, num_updates: int) -> None:
        decay = min(self.decay, (1 + num_updates) / (10 + num_updates))
        with self._gathered(engine):
            params = [param.detach().float() for param in engine.module.parameters()]
            torch._foreach_lerp_(list(self.shadow.values()), params, 1.0 - decay)  # one kernel, not one per tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {**self.shadow, **self.buffers}
        return {name: tensor.detach().float().cpu().contiguous() for name, tensor in tensors.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load the averaged weights (the buffers in `state` are the engine checkpoint's to restore)."""
        state = {name: tensor for name, tensor in state.items() if name not in self.buffers}
        if state.keys() != self.shadow.keys():
            raise ValueError("The checkpoint's EMA weights do not match this model; resume with the same config.")
        for name, tensor in state.items():
            self.shadow[name].copy_(tensor)


class CheckpointManager:
    """DeepSpeed checkpoints under `directory/stepNNNNNNNN/`, with the EMA weights as ema.safetensors.

    A kill at any moment never leaves a broken checkpoint behind `latest`: the EMA file and DeepSpeed's shards are
    written first, then a `COMPLETE` marker, and only then is `latest` replaced, atomically (write a temporary
    file, fsync, rename). Resuming reads `latest`, or falls back to the newest complete checkpoint.
    """

    def __init__(self, directory: Path, keep: int, dist: DistInfo, model_config=None) -> None:
        self.directory = directory
        self.keep = keep
        self.dist = dist
        self.model_config = model_config  # saved in each checkpoint, so `textdiff export` can rebuild the model

    @staticmethod
    def tag(step: int) -> str:
        return f"step{step:08d}"

    def has(self, step: int) -> bool:
        return (self.directory / self.tag(step) / "COMPLETE").is_file()

    def complete_tags(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("step*") if (p / "COMPLETE").is_file())

    def save(self, engine, ema: ExponentialMovingAverage, step: int) -> None:
        tag = self.tag(step)
        if self.dist.rank == 0:
            (self.directory / tag).mkdir(parents=True, exist_ok=True)
            save_file(ema.state_dict(), self.directory / tag / "ema.safetensors")
            if self.model_config is not None:
                self.model_config.to_json_file(self.directory / tag / "config.json")
        barrier(self.dist)
        engine.save_checkpoint(str(self.directory), tag=tag, client_state={"step": step}, save_latest=False)
        barrier(self.dist)
        if self.dist.rank == 0:
            (self.directory / tag / "COMPLETE").write_text(f"{step}\n")
            _atomic_write(self.directory / "latest", tag)
            for old in self.complete_tags()[: -self.keep]:
                shutil.rmtree(self.directory / old, ignore_errors=True)
        barrier(self.dist)

    def ensure(self, engine, ema: ExponentialMovingAverage, step: int) -> None:
        """Save the final state unless the loop just did."""
        if not self.has(step):
            self.save(engine, ema, step)

    def latest_tag(self) -> str | None:
        """The tag `latest` names if that checkpoint is complete, else the newest complete one, else None."""
        latest = self.directory / "latest"
        if latest.is_file():
            tag = latest.read_text().strip()
            if (self.directory / tag / "COMPLETE").is_file():
                return tag
        tags = self.complete_tags()
        return tags[-1] if tags else None

    def load(self, engine, ema: ExponentialMovingAverage) -> int:
        """Load the newest complete checkpoint into the engine and the EMA; return its step."""
        tag = self.latest_tag()
        if tag is None:
            raise ValueError(f"--resume: no complete checkpoint in {self.directory}; start without --resume.")
        path, client_state = engine.load_checkpoint(str(self.directory), tag=tag)
        if path is None:
            raise ValueError(f"--resume: the checkpoint {self.directory / tag} could not be loaded.")
        ema.load_state_dict(load_file(self.directory / tag / "ema.safetensors"))
        return int(client_state["step"])


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class MetricsLog:
    """One JSON object per line (rank 0 only): the training curve a plot is made from."""

    def __init__(self, path: Path, dist: DistInfo, *, append: bool) -> None:
        self.path = path
        self.enabled = dist.rank == 0
        if self.enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not append:
                path.write_text("")

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
    ) -> None:
        self.engine, self.ema, self.checkpoints, self.metrics = engine, ema, checkpoints, metrics
        self.group_names = group_names
        self.cfg, self.dist, self.order = train_cfg, dist, order
        self.tokens_per_step = order.global_batch_size * tokens_per_sequence

    def run(
        self,
        start_step: int,
        micro_step: Callable[[torch.Tensor, int], dict[str, torch.Tensor]],
        held_out: Callable[[], float] | None = None,
        desc: str = "train",
    ) -> int:
        """Train from `start_step` to training.max_steps (or the time budget); return the last step done.

        Args:
            micro_step: (row indices (b,), seed) -> scalar tensors, "loss" (backpropagated) first, then any
                other terms to log. The global RNG is seeded with `seed` before the call (dropout).
            held_out: Returns the held-out loss; called every eval_every steps.

        Raises:
            FloatingPointError: The loss became NaN or infinite.
            SystemExit: SIGTERM or SIGINT arrived; a checkpoint of the last finished step was written first.
        """
        cfg, dist, engine = self.cfg, self.dist, self.engine
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
