"""The GPU run, prepared: train at the paper's scale with DeepSpeed in bf16, train the equal-size AR baseline, then
measure the decoding speed–quality frontier against it, all in one command of at most 9 minutes.

    bash bench/gpu/run.sh --output OUT              # on a GPU machine (installs the wheels of .whl/ first)
    python -m bench.gpu.benchmark --output OUT --smoke   # the same stages on a CPU, tiny, in under a minute

Stages (each writes into --work, figures into OUT):
 1. environment: GPU, memory, torch / CUDA / DeepSpeed versions, bf16 support, and the measured dense matmul peak
    (one large bf16 matmul; fp32 on CPU) beside the card's datasheet peak.
 2. diffusion: `train/diffusion.py` on configs/e2e.yaml (BERT-base-size denoiser, d = 16, sequences of 64) for
    --train-minutes, through DeepSpeed, bf16, fused AdamW, torch.compile: tokens/s, MFU against both peaks, the
    loss curve and held-out loss.
 3. ar: `train/teacher.py` (GPT2LMHeadModel of the same width and depth) the same way for --ar-minutes; it is both
    the AR baseline and the teacher of the fluency figures.
 4. decoding: `generate` at each batch size × sampler × step count, against the AR baseline's HF `generate` with
    its KV cache at the same batch sizes: tokens/s and latency per sentence; teacher perplexity and dist-2 of
    every setting's samples (taken at the largest batch) and of human references.
 5. OUT/results.json (every figure), OUT/summary.md (printed last), OUT/samples.txt, OUT/diffusion-metrics.jsonl,
    OUT/ar-metrics.jsonl, OUT/loss.svg, OUT/log.txt: seven files.

A stage that fails is recorded in results.json with the end of its log, and the stages after it still run where
they can; a compiled training run that fails is retried once without torch.compile.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
logger = logging.getLogger("textdiff.bench")

# Dense bf16 tensor-core peaks from the datasheets (TFLOP/s, without sparsity), by a substring of the device name.
DATASHEET_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.05, "L4": 121.0}

# What the stages train. The model is the paper's (configs/e2e.yaml); the batch is raised from 64 to 256 so that
# one step fills the GPU (the paper's 64 × 64 tokens leave it launch-bound), with the learning rate scaled by √4.
GPU_RUN = {
    "config": "configs/e2e.yaml",
    "set": {
        "training.micro_batch_size": 256,
        "training.learning_rate": 3.0e-4,
        "training.warmup_steps": 300,
        "training.max_steps": 8000,  # the schedule's length; --train-minutes usually stops the run first
        "training.ema_decay": 0.9995,
        "training.log_every": 50,
        "training.eval_every": 1000,
        "training.eval_batches": 8,
        "training.checkpoint_every": 0,
        "training.keep_checkpoints": 1,
        "training.num_samples": 0,  # samples are drawn on the GPU in the decoding stage
    },
}
SMOKE_RUN = {
    "config": "configs/e2e-tiny.yaml",
    "set": {
        "model.hidden_size": 32,
        "model.num_hidden_layers": 2,
        "model.num_attention_heads": 2,
        "diffusion.num_steps": 200,
        "data.seq_len": 24,
        "tokenizer.min_frequency": 3,
        "training.micro_batch_size": 16,
        "training.learning_rate": 1.0e-3,
        "training.warmup_steps": 2,
        "training.max_steps": 12,
        "training.max_minutes": None,
        "training.log_every": 2,
        "training.eval_every": 6,
        "training.eval_batches": 1,
        "training.checkpoint_every": 0,
        "training.keep_checkpoints": 1,
        "training.num_samples": 0,
        "training.threads": 1,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="folder for the seven result files")
    parser.add_argument("--work", type=Path, default=None, help="runs folder (default: OUTPUT/../gpu-bench-runs)")
    parser.add_argument("--smoke", action="store_true", help="tiny model and corpus on CPU: checks every stage")
    parser.add_argument("--train-minutes", type=float, default=3.5, help="diffusion training budget")
    parser.add_argument("--ar-minutes", type=float, default=1.5, help="AR baseline training budget")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 200])
    parser.add_argument("--samplers", nargs="+", default=["ddpm", "dpm-solver++"])
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per setting (after one warm-up)")
    parser.add_argument("--no-compile", action="store_true", help="train without torch.compile")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_sizes, args.steps, args.repeats = [1, 8], [2, 4], 1
    if min(args.batch_sizes) < 1 or min(args.steps) < 1 or args.repeats < 1:
        parser.error("--batch-sizes, --steps and --repeats must be positive")
    return args


# --- 1. environment ---------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on, and the matmul peak measured in this run."""
    import transformers

    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
        "device": device.type,
    }
    try:
        import deepspeed

        env["deepspeed"] = deepspeed.__version__
    except ImportError as error:
        env["deepspeed"] = f"missing ({error})"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
            datasheet_bf16_tflops=next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in props.name), None),
        )
        env["measured_matmul_tflops"] = matmul_peak(device, torch.bfloat16, 8192)
    else:
        env.update(gpu=None, bf16_supported=False, datasheet_bf16_tflops=None)
        env["measured_matmul_tflops"] = matmul_peak(device, torch.float32, 512)
    return env


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Median wall-clock seconds of `repeats` calls after one warm-up call (device work included), and the last
    result."""
    result = function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """TFLOP/s of one n × n × n matmul on random data (median of 10 after 3 warm-ups)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    seconds, _ = timed(lambda: a @ b, device, 10)
    return 2 * n**3 / seconds / 1e12


# --- 2./3. training ---------------------------------------------------------------------------------------------


def train(
    script: str, run: dict, output_dir: Path, minutes: float | None, extra: list[str], compile_: bool, log: Path
) -> dict[str, Any]:
    """Run a training script in its own process (as a user would); retry once uncompiled if a compiled run fails."""
    overrides = {**run["set"], "training.output_dir": str(output_dir), "training.compile": compile_}
    if minutes is not None:
        overrides["training.max_minutes"] = minutes
    command = [sys.executable, script, "--config", run["config"], *extra]
    for key, value in overrides.items():
        command += ["--set", f"{key}={'null' if value is None else json.dumps(value)}"]
    started = time.monotonic()
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(
            command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=_child_env(), check=False
        )
    record: dict[str, Any] = {"command": " ".join(command), "wall_s": round(time.monotonic() - started, 1)}
    if result.returncode != 0:
        record["error"] = f"exit {result.returncode}: " + _tail(log)
        if compile_:
            logger.warning("%s failed with torch.compile; retrying without it.", script)
            shutil.rmtree(output_dir, ignore_errors=True)
            retry = train(script, run, output_dir, minutes, extra, False, log)
            return {**retry, "compiled_attempt_error": record["error"]}
    return record


def _child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def training_figures(run_dir: Path, flops_per_token: float, env: dict[str, Any]) -> dict[str, Any]:
    """Throughput (steady state: the second half of the logged steps, so compilation and warm-up are left out),
    MFU against the datasheet and the measured matmul peak, the last train and held-out losses."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "tokens_per_s" in r]
    run_config = json.loads((run_dir / "run_config.json").read_text())
    resolved = run_config["resolved"]
    tokens_per_step = resolved["global_batch"] * run_config["data"]["seq_len"]
    first, last = steps[len(steps) // 2], steps[-1]
    if last["step"] > first["step"] and last["elapsed_s"] > first["elapsed_s"]:
        rate = (last["step"] - first["step"]) * tokens_per_step / (last["elapsed_s"] - first["elapsed_s"])
    else:
        rate = last["tokens_per_s"]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    achieved = flops_per_token * rate / 1e12
    return {
        "precision": resolved["precision"],
        "steps": last["step"],
        "elapsed_s": last["elapsed_s"],
        "tokens_per_s": rate,
        "tokens_per_s_overall": last["tokens_per_s"],
        "sequences_seen": last["step"] * resolved["global_batch"],
        "epochs": last.get("epoch"),
        "final_lr": last["lr"],
        "train_loss": last["loss"],
        "held_out_loss": evals[-1] if evals else None,
        "model_tflops_per_s": achieved,
        "flops_per_token": flops_per_token,
        "mfu_measured_peak": achieved / env["measured_matmul_tflops"],
        "mfu_datasheet_peak": achieved / env["datasheet_bf16_tflops"] if env.get("datasheet_bf16_tflops") else None,
    }


def denoiser_flops_per_token(model, sequence_length: int) -> float:
    """Training FLOPs per position of the denoiser (forward + backward = 3 × forward; Kaplan et al.'s 6N rule
    with attention): 2 × the per-position matmul weights (up/down projections, blocks, and the rounding logits
    x·Eᵀ of the loss, V × d) + 4 · L · H per block for QKᵀ and AV. The timestep MLP runs once per sequence and is
    left out."""
    config = model.config
    weights = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.startswith(("time_embed", "condition_embed"))
    )
    weights += model.word_embeddings.weight.numel()  # the rounding head's matmul
    attention = 4 * sequence_length * config.hidden_size * config.num_hidden_layers
    return 3 * (2 * weights + attention)


def causal_lm_flops_per_token(model, sequence_length: int) -> float:
    """The same count for GPT-2: every 2-D weight but the position table (the tied word table is the LM head)."""
    config = model.config
    weights = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "wpe" not in name)
    attention = 4 * sequence_length * config.n_embd * config.n_layer
    return 3 * (2 * weights + attention)


# --- 4. decoding ------------------------------------------------------------------------------------------------


def decoding_frontier(
    model_dir: Path, ar_dir: Path, references: list[str], device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    """Speed at every batch size and quality at the largest, for every sampler × step count and the AR baseline."""
    from transformers import AutoModelForCausalLM

    import textdiff
    from textdiff.evaluation.fluency import sample_autoregressive, teacher_score
    from textdiff.evaluation.harness import load_metric

    model, tokenizer = textdiff.load_pretrained(str(model_dir))
    model.to(device).eval()
    ar = AutoModelForCausalLM.from_pretrained(str(ar_dir)).to(device).eval()
    distinct = load_metric("distinct_n")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def tokens(texts: list[str]) -> int:
        """Tokens of the texts as written: words + [END] (diffusion's padding after [END] is not counted)."""
        return sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])

    def quality(texts: list[str]) -> dict[str, float]:
        return {
            "teacher_perplexity": teacher_score(texts, ar, tokenizer, batch_size=256).perplexity,
            "dist_2": distinct.compute(predictions=texts, max_n=2)["dist-2"],
            "mean_words": sum(len(t.split()) for t in texts) / len(texts),
        }

    rows, samples = [], {}
    largest = max(args.batch_sizes)
    for batch in args.batch_sizes:

        def ar_call(batch=batch):
            with torch.inference_mode(), autocast:
                return sample_autoregressive(ar, tokenizer, batch, batch_size=batch, seed=0)

        seconds, texts = timed(ar_call, device, args.repeats)
        rows.append(_speed_row("AR (HF generate, KV cache)", "—", batch, seconds, tokens(texts)))
        if batch == largest:
            samples["AR"] = texts
            rows[-1].update(quality(texts))
        for sampler in args.samplers:
            for steps in args.steps:

                def call(batch=batch, sampler=sampler, steps=steps):
                    with torch.inference_mode(), autocast:
                        ids = model.generate(
                            num_return_sequences=batch, num_inference_steps=steps, sampler=sampler, seed=0
                        )
                    return tokenizer.batch_decode(ids.cpu(), skip_special_tokens=True)

                seconds, texts = timed(call, device, args.repeats)
                rows.append(_speed_row(f"diffusion {sampler}", steps, batch, seconds, tokens(texts)))
                if batch == largest:
                    samples[f"diffusion {sampler} {steps} steps"] = texts
                    rows[-1].update(quality(texts))
    human = {"decoder": "human references", "steps": "—", "batch": len(references), **quality(references)}
    return {"rows": rows, "human": human, "samples": samples, "quality_batch": largest}


def _speed_row(decoder: str, steps: int | str, batch: int, seconds: float, num_tokens: int) -> dict[str, Any]:
    return {
        "decoder": decoder,
        "steps": steps,
        "batch": batch,
        "seconds": seconds,
        "latency_ms_per_sentence": 1000 * seconds / batch,
        "tokens_per_s": num_tokens / seconds,
    }


# --- 5. report --------------------------------------------------------------------------------------------------


def summary_markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        f"# textdiff GPU run — {env.get('gpu') or 'CPU (smoke)'}, {env['date']}",
        "",
        f"torch {env['torch']} (CUDA {env.get('cuda')}), transformers {env['transformers']}, DeepSpeed "
        f"{env['deepspeed']}; measured matmul peak {env['measured_matmul_tflops']:.1f} TFLOP/s"
        + (f", datasheet {env['datasheet_bf16_tflops']} (dense bf16)" if env.get("datasheet_bf16_tflops") else ""),
        "",
        (
            "| training | precision | params | steps | tokens/s | MFU (measured / datasheet peak) | train loss |"
            " held-out loss | wall |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("diffusion", "ar"):
        stage = results.get(name, {})
        fig = stage.get("figures")
        if not fig:
            lines.append(f"| {name} | failed: see results.json | | | | | | | |")
            continue
        datasheet = f"{fig['mfu_datasheet_peak']:.1%}" if fig["mfu_datasheet_peak"] is not None else "—"
        held_out = f"{fig['held_out_loss']:.4f}" if fig["held_out_loss"] is not None else "—"
        lines.append(
            f"| {name} | {fig['precision']} | {stage['parameters'] / 1e6:.2f}M | {fig['steps']:,} | "
            f"{fig['tokens_per_s']:,.0f} | {fig['mfu_measured_peak']:.1%} / {datasheet} | {fig['train_loss']:.4f} | "
            f"{held_out} | {fig['elapsed_s']:.0f} s |"
        )
    decoding = results.get("decoding")
    if decoding:
        ar_rate = {r["batch"]: r["tokens_per_s"] for r in decoding["rows"] if r["decoder"].startswith("AR")}
        ar_ppl = next((r["teacher_perplexity"] for r in decoding["rows"] if "teacher_perplexity" in r), None)
        lines += [
            "",
            (
                f"Decoding (quality on the batch of {decoding['quality_batch']}; teacher = the AR baseline; "
                f"human references: teacher perplexity {decoding['human']['teacher_perplexity']:.2f}, "
                f"dist-2 {decoding['human']['dist_2']:.3f}):"
            ),
            "",
            "| decoder | steps | batch | tokens/s | × AR tokens/s | ms / sentence | teacher PPL | × AR PPL | dist-2 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in decoding["rows"]:
            ppl = r.get("teacher_perplexity")
            lines.append(
                f"| {r['decoder']} | {r['steps']} | {r['batch']} | {r['tokens_per_s']:,.0f} | "
                f"{r['tokens_per_s'] / ar_rate[r['batch']]:.2f} | {r['latency_ms_per_sentence']:.2f} | "
                + (f"{ppl:.2f} | {ppl / ar_ppl:.2f} | {r['dist_2']:.3f} |" if ppl is not None else "| | |")
            )
    for name, stage in results.items():
        if isinstance(stage, dict) and stage.get("error"):
            lines += ["", f"**{name} failed:** `{stage['error'].splitlines()[-1][:300]}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    work = (args.work or output.parent / "gpu-bench-runs").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = output / "log.txt"
    log.write_text("")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    run = SMOKE_RUN if args.smoke else GPU_RUN
    compile_ = not args.no_compile and device.type == "cuda"
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "run": run}
    started = time.monotonic()

    # 1. Environment.
    results["environment"] = env = environment(device)
    logger.info("Environment: %s", json.dumps(env))
    if args.smoke:  # a small corpus, so the smoke run's minute is not spent framing 42k sentences
        run = {**run, "set": {**run["set"], "data.dataset": str(_smoke_corpus(work / "corpus"))}}

    # 2. The diffusion model.
    diffusion_dir, ar_dir = work / "diffusion", work / "ar"
    model_dir = diffusion_dir / "model"
    minutes = None if args.smoke else args.train_minutes
    results["diffusion"] = train("train/diffusion.py", run, diffusion_dir, minutes, [], compile_, log)
    if (model_dir / "model.safetensors").is_file():
        with _stage(results, "diffusion", output):
            import textdiff

            model, _ = textdiff.load_pretrained(str(model_dir))
            flops = denoiser_flops_per_token(model, model.config.max_position_embeddings)
            results["diffusion"]["parameters"] = model.num_parameters()
            results["diffusion"]["figures"] = training_figures(diffusion_dir, flops, env)
            shutil.copy(diffusion_dir / "metrics.jsonl", output / "diffusion-metrics.jsonl")
            _plot(diffusion_dir / "metrics.jsonl", output / "loss.svg", log)

        # 3. The AR baseline and teacher, on the diffusion model's vocabulary.
        minutes = None if args.smoke else args.ar_minutes
        extra = ["--tokenizer", str(model_dir)]
        results["ar"] = train("train/teacher.py", run, ar_dir, minutes, extra, compile_, log)
    if (ar_dir / "model" / "model.safetensors").is_file():
        with _stage(results, "ar", output):
            from transformers import AutoModelForCausalLM

            ar_model = AutoModelForCausalLM.from_pretrained(str(ar_dir / "model"))
            flops = causal_lm_flops_per_token(ar_model, ar_model.config.n_positions)
            results["ar"]["parameters"] = ar_model.num_parameters()
            results["ar"]["figures"] = training_figures(ar_dir, flops, env)
            shutil.copy(ar_dir / "metrics.jsonl", output / "ar-metrics.jsonl")

        # 4. Decoding.
        results["decoding"] = {}
        with _stage(results, "decoding", output):
            from textdiff.data import load_corpus

            dataset = REPO / run["set"].get("data.dataset", "data/e2e")  # the run config's own corpus otherwise
            references = list(load_corpus(str(dataset), "validation")["text"][: max(args.batch_sizes)])
            decode_started = time.monotonic()
            frontier = decoding_frontier(model_dir, ar_dir / "model", references, device, args)
            frontier["wall_s"] = round(time.monotonic() - decode_started, 1)
            samples = frontier.pop("samples")
            results["decoding"] = frontier
            with (output / "samples.txt").open("w", encoding="utf-8") as handle:
                for name, texts in samples.items():
                    handle.write(f"## {name}\n" + "\n".join(texts[:20]) + "\n\n")
                handle.write("## human references\n" + "\n".join(references[:20]) + "\n")

    # 5. Report.
    results["wall_s"] = round(time.monotonic() - started, 1)
    _save(results, output)
    summary = summary_markdown(results)
    (output / "summary.md").write_text(summary)
    print(summary)
    return results


def _save(results: dict[str, Any], output: Path) -> None:
    """results.json as it stands (written after every stage, so a run stopped by its time limit keeps its figures)."""
    (output / "results.json").write_text(json.dumps(results, indent=2, default=str))


@contextlib.contextmanager
def _stage(results: dict[str, Any], name: str, output: Path) -> Iterator[None]:
    """Record a failing stage's error in results[name] instead of losing the other stages' figures; save after it."""
    try:
        yield
    except Exception:  # noqa: BLE001 - a benchmark keeps what it measured; the traceback goes into the results
        logger.exception("Stage %s failed.", name)
        results.setdefault(name, {})["error"] = traceback.format_exc()
    _save(results, output)


def _smoke_corpus(directory: Path) -> Path:
    """The first 2,000 training and 200 validation sentences of the bundled E2E corpus."""
    directory.mkdir(parents=True)
    for split, limit in (("train", 2000), ("validation", 200)):
        with gzip.open(REPO / "data" / "e2e" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as source:
            rows = [line for _, line in zip(range(limit), source)]
        (directory / f"{split}.jsonl").write_text("".join(rows), encoding="utf-8")
    return directory


def _plot(metrics: Path, svg: Path, log: Path) -> None:
    command = [sys.executable, str(REPO / "docs" / "plot_loss.py"), str(metrics), str(svg), "--title", "diffusion"]
    with log.open("a") as handle:
        subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False)


if __name__ == "__main__":
    main()
