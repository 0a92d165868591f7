"""Files that ship with textdiff: the bundled run configs and DeepSpeed configs, the E2E corpus, Diffusion-LM's
control targets, the POS oracle's model and the evaluate metric modules.

An installed wheel holds the repository's configs/ and data/ as textdiff/bundled/ (pyproject.toml maps them); a
checkout has them at its top level. `bundled` finds a file in either, so the same code runs from both.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# The wheel's copy first, then, in a checkout (an editable install), the repository's top level.
_ROOTS = (PACKAGE / "bundled",) + ((PACKAGE.parent,) if (PACKAGE.parent / "pyproject.toml").is_file() else ())


def bundled(relative: str | Path) -> Path:
    """The path of a bundled file or folder, e.g. bundled("configs/e2e-tiny.yaml") or bundled("data/e2e").

    Raises:
        FileNotFoundError: Neither the installed package nor a checkout holds it.
    """
    for root in _ROOTS:
        if (root / relative).exists():
            return root / relative
    raise FileNotFoundError(
        f"textdiff's bundled file {relative} is missing (looked in {', '.join(map(str, _ROOTS))}); reinstall "
        "textdiff with `pip install .` from a complete checkout."
    )


def cache_dir(name: str) -> Path:
    """A folder for what textdiff trains on first use (oracles): $TEXTDIFF_CACHE/name, else ~/.cache/textdiff/name.
    The variable is read at each call, so a test or a job can point every use, subprocesses included, elsewhere."""
    return Path(os.environ.get("TEXTDIFF_CACHE", Path.home() / ".cache" / "textdiff")) / name


def bundled_config(name: str) -> Path:
    """A bundled run config by name, e.g. bundled_config("e2e-tiny") -> .../configs/e2e-tiny.yaml."""
    return bundled(Path("configs") / f"{name.removesuffix('.yaml')}.yaml")


def metric_path(name: str) -> str:
    """The folder of one of textdiff's evaluate metric modules, for `evaluate.load(metric_path("self_bleu"))`.

    The metrics: bleu, self_bleu, distinct_n, rouge_l, control_semantic, control_pos, control_spans, control_tree,
    control_length.
    """
    path = PACKAGE / "evaluation" / "metrics" / name
    if not (path / f"{name}.py").is_file():
        known = sorted(p.name for p in path.parent.iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise ValueError(f"Unknown metric {name!r}; textdiff's metrics are {known}.")
    return str(path)
