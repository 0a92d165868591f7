"""The command line every training script takes, and the run config it names."""

from __future__ import annotations

import argparse

from textdiff.utils import OneLineErrors

from .config import RunConfig


def training_arguments(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The flags every training script takes (the `deepspeed` launcher adds --local_rank). `prog`: the command
    its usage line names (e.g. "textdiff train"; default: the script)."""
    parser = OneLineErrors(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        required=True,
        help="YAML run config (e.g. configs/e2e-tiny.yaml), or a bundled config by name (e2e-tiny)",
    )
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
