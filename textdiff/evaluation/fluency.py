"""Fluency as Diffusion-LM measures it ("lm-score"): the perplexity of texts under a teacher autoregressive LM
trained on the same data and vocabulary, and the teacher's own NLL on held-out text.

Each text is framed as [START] w_1 … w_n [END]; the teacher predicts w_1 … w_n and [END] (n + 1 tokens), so
perplexity = exp(Σ NLL / Σ (n + 1)) over all texts (a corpus-level, token-weighted figure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_causal_lm(directory: str, flag: str = "--teacher") -> PreTrainedModel:
    """The autoregressive teacher (or baseline) in `directory`, in eval mode.

    Raises:
        ValueError: a local directory without config.json, or one that holds a model that is not a causal LM
            (e.g. a diffusion model's directory passed as the teacher), named with the flag it came from.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    import textdiff  # noqa: F401  (registers the textdiff config, so that its model_type can be named)
    from textdiff.utils import hub_reachable

    path = Path(directory)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{flag} {directory}: no config.json there; pass the model directory a teacher run exported "
                "(`textdiff train-teacher` writes OUTPUT/model)."
            )
        model_type = AutoConfig.from_pretrained(directory).model_type
        if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ValueError(
                f"{flag} {directory} holds a {model_type!r} model, not a causal language model; the {flag[2:]} "
                "must be an autoregressive LM with the same vocabulary, e.g. from `textdiff train-teacher "
                "--config C --tokenizer MODEL` (its OUTPUT/model)."
            )
    elif path.exists():
        raise ValueError(f"{flag} {directory} is a file; pass the directory of the exported model.")
    elif directory.startswith((".", "/", "~")) or not hub_reachable():
        raise ValueError(
            f"{flag} {directory} does not exist (and is not reachable on the hub); pass the model directory a "
            "teacher run exported (`textdiff train-teacher` writes OUTPUT/model)."
        )
    return AutoModelForCausalLM.from_pretrained(directory).eval()


@dataclass
class TeacherScore:
    """Attributes:
    nats_per_token: Σ NLL / Σ predicted tokens.
    perplexity: exp(nats_per_token).
    num_texts / num_tokens: What was scored (texts longer than the teacher's context are truncated).
    """

    nats_per_token: float
    perplexity: float
    num_texts: int
    num_tokens: int


def frame(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[list[int]]:
    """[START] ids [END], truncated to `max_length` (the teacher's context)."""
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [[tokenizer.bos_token_id, *ids, tokenizer.eos_token_id][:max_length] for ids in encoded]


@torch.no_grad()
def teacher_score(
    texts: list[str],
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> TeacherScore:
    """Token-weighted perplexity of `texts` under the causal LM `teacher`."""
    if not texts:
        raise ValueError("teacher_score needs at least one text.")
    framed = frame(texts, tokenizer, teacher.config.max_position_embeddings)
    return score_framed(framed, teacher, tokenizer.pad_token_id, batch_size=batch_size, progress=progress)


@torch.no_grad()
def score_framed(
    framed: list[list[int]],
    teacher: PreTrainedModel,
    pad_token_id: int,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> TeacherScore:
    """Token-weighted perplexity of already framed id lists ([START] … [END]) under `teacher`."""
    from tqdm.auto import tqdm

    teacher.eval()
    device = next(teacher.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for start in tqdm(range(0, len(framed), batch_size), desc="teacher perplexity", disable=not progress):
        rows = framed[start : start + batch_size]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = teacher(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, W−1, V) predicts ids[:, 1:]
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        nll = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=-100, reduction="sum")
        total_nll += nll.item()
        total_tokens += int((targets != -100).sum())
    nats = total_nll / max(total_tokens, 1)
    return TeacherScore(nats_per_token=nats, perplexity=math.exp(nats), num_texts=len(framed), num_tokens=total_tokens)


@torch.no_grad()
def sample_autoregressive(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    num_samples: int,
    *,
    batch_size: int = 64,
    seed: int = 0,
) -> list[str]:
    """Ancestral samples (temperature 1, no top-k/top-p) from [START] to [END], with HF `generate` and its KV
    cache: the autoregressive baseline's text."""
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    texts: list[str] = []
    while len(texts) < num_samples:
        n = min(batch_size, num_samples - len(texts))
        start = torch.full((n, 1), tokenizer.bos_token_id, dtype=torch.long, device=device)
        out = model.generate(
            start,
            attention_mask=torch.ones_like(start),
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            max_length=model.config.max_position_embeddings,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts.extend(tokenizer.batch_decode(out, skip_special_tokens=True))
    return texts
