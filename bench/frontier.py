"""The speed–quality frontier of parallel decoding against autoregression, measured in one run on one machine.

For each batch size: the AR baseline decoding token by token, two ways — HF `generate` with its KV cache, and a
lean loop over the model's forward with its KV cache (no logits processors, no stopping-criteria machinery) — and
the diffusion model for each decoder (sampler, clamped or soft x̂0) and step count. Every row reports seconds per
batch (best of --repeats rounds that run every row in turn, after a warm-up: this VM's speed drifts by ±20 % over
minutes, so rows timed at different moments would not compare), tokens/s of the finished texts, and the teacher
perplexity and dist-2 of the texts of the largest batch. Few-step students (`textdiff distill`) decode with their
own saved settings. With --compile every diffusion row decodes through compiled graphs (`torch_compile=True`,
textdiff/compilation.py) and a third AR row runs the lean loop through the same compilation (a static KV cache: one
shape, one graph). A row's time is per batch, the mean over the batches of --sentences sentences (batch 1: the
latency of 16 different sentences, not of one). Ratios to the fastest AR baseline at each batch come last, and
every diffusion row's perplexity over that of the model at its most steps. Diffusion decodes the windows drawn from
its length prior (all of a batch at the longest one, or with :bucket in groups of similar length).

    python bench/frontier.py --model runs/e2e-tiny/model --teacher runs/teacher/model --batches 1 64 256 \
        --decoders renoise:soft ddpm:clamp renoise:soft:0.5 --steps 16 50 200 \
        --students runs/e2e-tiny-student/model runs/e2e-tiny-student/model:bucket [--compile]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
from decoding_ablation import parse_decoder  # bench/ is on the path when a bench runs as a script
from transformers import AutoModelForCausalLM, AutoTokenizer, StaticCache

import textdiff
from textdiff.compilation import compiled_forward
from textdiff.evaluation.fluency import sample_autoregressive, teacher_score
from textdiff.evaluation.harness import load_metric


def timed_in_turn(functions: dict, repeats: int) -> dict:
    """{name: (best wall-clock seconds, last result)} of each function over `repeats` rounds that call every
    function in turn (after one warm-up call each), so that a slow spell of the machine touches every row alike."""
    results = {name: function() for name, function in functions.items()}  # warm-up
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            results[name] = function()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: (best[name], results[name]) for name in functions}


@torch.inference_mode()
def lean_autoregressive(model, tokenizer, batch: int, seed: int, compiled=None, caches=None) -> list[str]:
    """Ancestral samples (temperature 1) from [START] to [END] with a plain loop over the forward pass and its KV
    cache: one token per step for the whole batch, stopping when every row has written [END]. With `compiled` (the
    model through `textdiff.compilation.compiled_forward`), a static KV cache of the model's full width instead, one
    per batch size kept in `caches` and emptied for each call, so that every step is the one compiled graph."""
    generator = torch.Generator().manual_seed(seed)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    config, width = model.config, model.config.max_position_embeddings
    tokens = torch.full((batch, 1), bos, dtype=torch.long)
    written, done, past = [tokens], torch.zeros(batch, dtype=torch.bool), None
    if compiled is not None:
        past = caches.get(batch)
        if past is None:
            past = caches[batch] = StaticCache(config=config, max_cache_len=width)
            past.early_initialization(batch, config.n_head, config.n_embd // config.n_head, model.dtype, model.device)
        past.reset()
    for position in range(width - 1):
        if compiled is None:
            out = model(input_ids=tokens, past_key_values=past, use_cache=True)
            past = out.past_key_values
        else:
            out = compiled(input_ids=tokens, past_key_values=past, use_cache=True,
                           cache_position=torch.tensor([position]))  # fmt: skip
        tokens = torch.multinomial(out.logits[:, -1].float().softmax(-1), 1, generator=generator)  # (B, 1)
        tokens = tokens.masked_fill(done[:, None], pad)
        written.append(tokens)
        done |= tokens[:, 0] == eos
        if done.all():
            break
    return tokenizer.batch_decode(torch.cat(written, 1), skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--teacher", required=True, help="AR model that judges the texts (perplexity)")
    parser.add_argument("--baseline", default=None, help="AR model that decodes against diffusion (default: teacher)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--decoders", nargs="+", type=parse_decoder, default=[parse_decoder("renoise:soft")],
                        help="SAMPLER:clamp|soft[:TAU][:bucket] (TAU: the x̂0 temperature; bucket: length "
                        "buckets)")  # fmt: skip
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 50, 200])
    parser.add_argument("--students", nargs="*", default=[], metavar="DIR[:bucket]",
                        help="few-step students (textdiff distill), each decoded with its own saved settings; "
                        ":bucket decodes the batch in length buckets")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="decode every diffusion row through compiled graphs (torch_compile=True), and add the AR "
                        "lean loop with a static KV cache through the same compilation")  # fmt: skip
    parser.add_argument("--sentences", type=int, default=16,
                        help="a timed call decodes batches of B rows, ceil(N / B) of them, from seeds seed, seed + 1, "
                        "…, and a row reports the time per batch: batch-1 latency is the mean over N sentences")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = textdiff.load_pretrained(args.model)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher).eval()
    baseline = AutoModelForCausalLM.from_pretrained(args.baseline).eval() if args.baseline else teacher
    AutoTokenizer.from_pretrained(args.baseline or args.teacher)  # the baseline must bring the same vocabulary
    dist = load_metric("distinct_n")
    print(
        f"torch threads: {torch.get_num_threads()}; diffusion {model.num_parameters() / 1e6:.2f}M parameters, AR "
        f"baseline {baseline.num_parameters() / 1e6:.2f}M; up to {model.config.max_position_embeddings} positions"
    )

    def real_tokens(texts: list[str]) -> int:
        """Tokens of the texts as written: words + [END] (padding after [END] is not counted)."""
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)

    decoders = {  # name -> decode(batch, seed)
        "AR, HF generate + KV cache": lambda b, seed: sample_autoregressive(
            baseline, tokenizer, b, batch_size=b, seed=seed
        ),
        "AR, lean loop + KV cache": lambda b, seed: lean_autoregressive(baseline, tokenizer, b, seed),
    }
    if args.compile:
        ar_graphs = compiled_forward(baseline)
        decoders["AR, lean loop + static KV cache, compiled"] = partial(
            lean_autoregressive, baseline, tokenizer, compiled=ar_graphs, caches={}
        )
    ar_names = list(decoders)
    compiled = {"torch_compile": True} if args.compile else {}
    suffix = ", compiled" if args.compile else ""
    for decoder in args.decoders:
        for steps in args.steps:
            name = f"diffusion, {decoder}, {steps} steps{suffix}"

            def diffusion(b, seed, decoder=decoder, steps=steps):
                ids = model.generate(num_return_sequences=b, num_inference_steps=steps, seed=seed,
                                     **decoder.settings(), **compiled)  # fmt: skip
                return tokenizer.batch_decode(ids, skip_special_tokens=True)

            decoders[name] = diffusion
    for spec in args.students:
        directory, bucket = spec.removesuffix(":bucket"), spec.endswith(":bucket")
        student, _ = textdiff.load_pretrained(directory)
        saved = student.generation_config
        name = (f"student {directory}, {saved.sampler} τ {getattr(saved, 'x0_temperature', 1.0):g}"
                f"{', length buckets' if bucket else ''}, {saved.num_inference_steps} steps{suffix}")  # fmt: skip

        def distilled(b, seed, student=student, bucket=bucket):
            ids = student.generate(num_return_sequences=b, seed=seed, bucket_lengths=bucket, **compiled)
            return tokenizer.batch_decode(ids, skip_special_tokens=True)

        decoders[name] = distilled

    def batches(decode, batch: int, calls: int) -> list[str]:
        return [text for call in range(calls) for text in decode(batch, args.seed + call)]

    results = {}  # (name, batch) -> (seconds per batch, tokens/s, texts)
    for batch in args.batches:
        calls = -(-args.sentences // batch)
        with torch.inference_mode():
            timings = timed_in_turn(
                {name: partial(batches, decode, batch, calls) for name, decode in decoders.items()}, args.repeats
            )
        for name, (seconds, texts) in timings.items():
            results[name, batch] = (seconds / calls, real_tokens(texts) / seconds, texts)
            print(f"batch {batch:4d} | {name}: {seconds / calls * 1e3:,.1f} ms, {results[name, batch][1]:,.0f} "
                  "tokens/s", flush=True)  # fmt: skip

    largest = max(args.batches)
    quality = {}
    for name in decoders:
        texts = results[name, largest][2]
        quality[name] = (
            teacher_score(texts, teacher, tokenizer).perplexity,
            dist.compute(predictions=texts, max_n=2)["dist-2"],
        )
    print(f"\n| decoder | {' | '.join(f'batch {b}: ms, tokens/s' for b in args.batches)} | teacher PPL | dist-2 |")
    print("|---|" + "---|" * len(args.batches) + "---|---|")
    for name in decoders:
        cells = " | ".join(f"{results[name, b][0] * 1e3:,.1f} ms, {results[name, b][1]:,.0f}" for b in args.batches)
        print(f"| {name} | {cells} | {quality[name][0]:.2f} | {quality[name][1]:.3f} |")
    print(f"\n(ms per batch, the mean over {args.sentences} sentences' batches; teacher perplexity and dist-2 of the "
          f"batch-{largest} texts)")  # fmt: skip
    reference = f"diffusion, {args.decoders[0]}, {max(args.steps)} steps{suffix}"  # the model at its most steps
    print(f"\nTeacher perplexity over that of '{reference}':")
    for name in list(decoders)[len(ar_names):]:
        print(f"{name}: {quality[name][0] / quality[reference][0]:.2f}×")
    print("\nRatios to the faster AR baseline at each batch:")
    for batch in args.batches:
        fastest = min(ar_names, key=lambda n: results[n, batch][0])
        for name in list(decoders)[len(ar_names):]:
            time_ratio = results[name, batch][0] / results[fastest, batch][0]
            rate_ratio = results[name, batch][1] / results[fastest, batch][1]
            print(f"batch {batch:4d} | {name}: time {time_ratio:.2f}× | tokens/s {rate_ratio:.2f}× ({fastest})")


if __name__ == "__main__":
    main()
