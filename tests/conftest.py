"""Shared fixtures: a tiny model config, a tiny slice of the bundled E2E corpus, and a fixture-size span oracle.

Every test runs with its own empty TEXTDIFF_CACHE and no GUM trees, so no test reads a machine's caches or trains
the full span oracle (minutes): a test that needs the oracle asks for `span_oracle`, trained once per session on
a few GUM documents."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
import torch

import textdiff

REPO = Path(__file__).resolve().parents[1]
E2E = REPO / "data" / "e2e"
GUM = Path(os.environ.get("TEXTDIFF_GUM", REPO.parent / "shared" / "data" / "gum_const"))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory) -> Path:
    """TEXTDIFF_CACHE, TEXTDIFF_SPAN_ORACLE and TEXTDIFF_SPAN_FAITHFUL in this session's folder (subprocesses
    inherit them); TEXTDIFF_GUM pointed at nothing."""
    cache = tmp_path_factory.mktemp("textdiff-cache")
    names = ("TEXTDIFF_CACHE", "TEXTDIFF_GUM", "TEXTDIFF_SPAN_ORACLE", "TEXTDIFF_SPAN_FAITHFUL")
    saved = {key: os.environ.get(key) for key in names}
    os.environ["TEXTDIFF_CACHE"] = str(cache)
    os.environ["TEXTDIFF_GUM"] = str(cache / "no-gum-in-tests")
    os.environ["TEXTDIFF_SPAN_ORACLE"] = str(cache / "span_oracle")  # the fixture's, not the bundled one
    os.environ["TEXTDIFF_SPAN_FAITHFUL"] = str(cache / "span_faithful")
    yield cache
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def independent_tagger(isolated_cache) -> Path:
    """A fixture-size independent POS tagger (10 GUM documents + EWT dev, 2 iterations: ≈ 10 s) where
    `independent_pos_oracle()` finds it; its folder."""
    from textdiff.evaluation.oracles import independent_pos_dir, train_independent_tagger

    ewt = Path(os.environ.get("TEXTDIFF_UD_EWT", REPO.parent / "shared" / "data" / "ud_english_ewt"))
    if not GUM.is_dir() or not ewt.is_dir():
        pytest.skip(f"no GUM trees at {GUM} or no UD English-EWT at {ewt}")
    directory = independent_pos_dir()
    train_independent_tagger(GUM, ewt, directory, iterations=2, max_files=10)
    return directory


@pytest.fixture(scope="session")
def span_oracle(isolated_cache) -> Path:
    """A fixture-size span oracle (12 GUM documents, 2 epochs: ≈ 20 s) where `SpanOracle()` finds it; its folder."""
    from textdiff.evaluation.span_parser import span_oracle_dir, train

    if not GUM.is_dir():
        pytest.skip(f"no GUM trees at {GUM} (../shared/data/gum_const or TEXTDIFF_GUM)")
    directory = span_oracle_dir()
    train(GUM, directory, epochs=2, max_files=12)
    return directory


@pytest.fixture(scope="session")
def independent_span_oracle(independent_tagger) -> Path:
    """A fixture-size second span oracle (12 GUM documents with their gold tags, 2 epochs, read with the fixture's
    independent tagger: ≈ 20 s) where `independent_span_oracle()` finds it; its folder."""
    from textdiff.evaluation.span_parser import independent_span_oracle_dir, train

    directory = independent_span_oracle_dir()
    train(GUM, directory, epochs=2, seed=1, max_files=12, tags="gold")
    return directory


def e2e_texts(split: str = "train", limit: int | None = None) -> list[str]:
    with gzip.open(E2E / f"{split}.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line)["text"] for _, line in zip(range(limit or 10**9), handle)]
    return rows


def tiny_config(**overrides) -> textdiff.TextDiffusionConfig:
    settings = dict(
        vocab_size=100,
        embedding_dim=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=12,
        hidden_dropout_prob=0.0,
        attention_dropout_prob=0.0,
        num_diffusion_steps=100,
        initializer_range=0.2,  # large enough that an untrained model's output depends on its input
    )
    settings.update(overrides)
    return textdiff.TextDiffusionConfig(**settings)


@pytest.fixture
def tiny_model() -> textdiff.TextDiffusionModel:
    torch.manual_seed(0)
    return textdiff.TextDiffusionModel(tiny_config())


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A directory with train.jsonl (400 E2E sentences) and validation.jsonl (50)."""
    directory = tmp_path / "corpus"
    directory.mkdir()
    for split, limit in (("train", 400), ("validation", 50)):
        with (directory / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for text in e2e_texts(split, limit):
                handle.write(json.dumps({"text": text}) + "\n")
    return directory


@pytest.fixture(scope="module")
def module_corpus(tmp_path_factory):
    """Like tiny_corpus, shared by a test module: train.jsonl (300 sentences), validation.jsonl (40)."""
    directory = tmp_path_factory.mktemp("corpus")
    for split, limit in (("train", 300), ("validation", 40)):
        with (directory / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for text in e2e_texts(split, limit):
                handle.write(json.dumps({"text": text}) + "\n")
    return directory


def saved_web_model(root: Path) -> Path:
    """A tiny untrained model with a word tokenizer of E2E sentences, a saved renoise decoding and an untrained
    field_value classifier beside it: what `textdiff serve` loads, in a second."""
    from transformers import GenerationConfig

    from textdiff.guidance import LatentClassifier, LatentClassifierConfig, classifier_path

    tokenizer = textdiff.train_tokenizer(e2e_texts("train", 200), "word", min_frequency=1)
    torch.manual_seed(0)
    model = textdiff.TextDiffusionModel(
        tiny_config(
            vocab_size=len(tokenizer),
            max_position_embeddings=24,
            prediction_type="logits",
            min_timestep=10,
            num_diffusion_steps=2000,
        )  # fmt: skip
    )
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    GenerationConfig(sampler="renoise", num_inference_steps=20, clamp=False).save_pretrained(root)
    classifier = LatentClassifier(
        LatentClassifierConfig(
            task="field_value",
            fields={"food": ["Chinese", "Italian"], "area": ["riverside"]},
            embedding_dim=16,
            hidden_size=16,
            num_attention_heads=2,
            max_position_embeddings=24,
            num_diffusion_steps=2000,
        )
    )
    classifier.save_pretrained(classifier_path(root, "field_value"))
    return root


class ServerThread:
    """`textdiff.serving`'s app on a free localhost port, served by uvicorn in a thread: `with ServerThread(app) as
    url: ...`."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))

    def __enter__(self) -> str:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
