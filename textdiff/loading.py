"""Loading a saved model and its tokenizer safely: weights only from safetensors (never a pickle), one clear
error for a missing, truncated or corrupted file, a hub id without network, or a tokenizer that does not match."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModel, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase

from .modeling import TextDiffusionModel
from .tokenization import check_tokenizer_matches
from .utils import hub_reachable


def load_pretrained(
    name_or_path: str, tokenizer_path: str | None = None
) -> tuple[TextDiffusionModel, PreTrainedTokenizerBase]:
    """A `TextDiffusionModel` and its tokenizer from a directory written by `save_pretrained` (or a hub id).

    Args:
        name_or_path: Local directory, or "org/name" on the Hugging Face hub (needs the network).
        tokenizer_path: Where the tokenizer is, if not beside the model.
    """
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} is a file; pass the directory that save_pretrained wrote.")
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} has no config.json; pass the directory that save_pretrained wrote.")
        if not (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").is_file():
            pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
            hint = f" It holds {pickled}: pickle files, which textdiff never loads." if pickled else ""
            raise ValueError(
                f"{path} has no model.safetensors.{hint} Export the model with save_pretrained (safetensors)."
            )
    elif name_or_path.startswith((".", "/")) or not hub_reachable():
        raise ValueError(
            f"Cannot load {name_or_path!r}: it is not a local directory and the Hugging Face hub is unreachable. "
            "Pass the directory that save_pretrained (or `textdiff train`) wrote, e.g. runs/e2e-tiny/model."
        )
    try:
        model = AutoModel.from_pretrained(name_or_path, use_safetensors=True)
    except Exception as error:  # safetensors' and transformers' errors for a damaged file, in one message
        if "safetensor" in type(error).__name__.lower() or "deserializ" in str(error):
            raise ValueError(
                f"The weights in {name_or_path} are truncated or corrupted ({error}); export the model again "
                "with save_pretrained, or re-download it."
            ) from error
        raise
    if not isinstance(model, TextDiffusionModel):
        raise ValueError(f"{name_or_path} holds a {type(model).__name__}, not a textdiff model.")
    if path.is_dir() and (path / "generation_config.json").is_file():  # decoding defaults saved with the model
        model.generation_config = GenerationConfig.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or name_or_path)
    check_tokenizer_matches(tokenizer, model.config.vocab_size)
    if getattr(model.config, "unk_token_id", None) is None:  # models saved before the config recorded it
        model.config.unk_token_id = tokenizer.unk_token_id
    return model.eval(), tokenizer
