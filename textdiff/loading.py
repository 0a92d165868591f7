"""Loading a saved model and its tokenizer safely: weights only from safetensors (never a pickle), and one clear
error naming the file for a missing, truncated or corrupted file, weights that do not match config.json (a
tensor missing or extra, a shape that differs), weights that are not finite, a config of another model type, a
hub id without network, or a tokenizer that is unreadable or does not match."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from .integrity import check_finite, check_saved_model
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
    if path.is_dir():
        check_saved_model(path, TextDiffusionModel)
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
    check_finite(model, name_or_path)
    tokenizer_source = tokenizer_path or name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    except Exception as error:  # missing files, garbage JSON, a class that cannot be built: one message
        reason = " ".join(str(error).split())[:160]
        raise ValueError(
            f"Cannot read the tokenizer in {tokenizer_source} ({type(error).__name__}: {reason}); copy the files of "
            "the tokenizer the model was trained with (tokenizer.json, tokenizer_config.json) there."
        ) from None
    check_tokenizer_matches(tokenizer, model.config.vocab_size)
    if getattr(model.config, "unk_token_id", None) is None:  # models saved before the config recorded it
        model.config.unk_token_id = tokenizer.unk_token_id
    return model.eval(), tokenizer
