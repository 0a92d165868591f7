"""The package as users get it: one top-level `textdiff` whose modules import without cycles and never reach up
into the repository's scripts, and a wheel that works outside the checkout."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "textdiff"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:` (never run)."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """({module: textdiff modules it imports}, {module: top-level names of anything else it imports})."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "metrics" not in p.parts}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    outside: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target.split(".")[0] == "textdiff":
                    while target not in modules:  # `import textdiff.x.y` of a name inside a module
                        target = target.rpartition(".")[0]
                    if target != name:
                        graph[name].add(target)
                else:
                    outside[name].add(target.split(".")[0])
    return graph, outside


def test_no_import_cycles_among_textdiff_modules():
    graph, _ = import_graph()
    assert len(graph) > 20  # the walk found the package
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_the_scripts_above_it():
    _, outside = import_graph()
    offenders = {m: sorted(names & {"train", "eval", "bench", "tests"}) for m, names in outside.items()}
    assert not {m: n for m, n in offenders.items() if n}


def test_the_import_graph_sees_real_edges():
    """The walk is not vacuous: it finds the edges that exist, lazy ones included."""
    graph, _ = import_graph()
    assert "textdiff.layers" in graph["textdiff.modeling"]
    assert "textdiff.generation" in graph["textdiff.modeling"]  # the lazy import in TextDiffusionModel.generate
    assert "textdiff.modeling" not in graph["textdiff.generation"]  # a TYPE_CHECKING import only
    assert "textdiff.training.loop" in graph["textdiff.training.diffusion"]


@pytest.mark.skipif(os.environ.get("TEXTDIFF_SKIP_WHEEL") == "1", reason="TEXTDIFF_SKIP_WHEEL=1")
def test_wheel_installs_one_package_that_works_outside_the_checkout(tmp_path):
    """Build the wheel, install it (no dependencies: they are this environment's) into a fresh virtualenv, and
    from a folder outside the checkout train 5 steps from a bundled config, generate, tag with the POS oracle
    and load an evaluate metric."""
    source, wheels = tmp_path / "source", tmp_path / "wheels"  # built from a copy: no build/ left in the checkout
    skip = shutil.ignore_patterns(
        ".git", "runs", "build", "*.egg-info", "__pycache__", ".venv", ".whl", ".pytest_cache"
    )
    shutil.copytree(REPO, source, ignore=skip)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("textdiff-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"textdiff"}
    assert "textdiff/bundled/configs/e2e-tiny.yaml" in names
    assert "textdiff/evaluation/metrics/self_bleu/self_bleu.py" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = r"""
import json, sys
from pathlib import Path
import evaluate, textdiff
assert "site-packages" in textdiff.__file__, textdiff.__file__
from textdiff.cli import main
from textdiff.evaluation.oracles import PosOracle
from textdiff.resources import bundled_config, metric_path
config = bundled_config("e2e-tiny")
assert "site-packages" in str(config), config
code = main(["train", "--config", "e2e-tiny", "--set", "training.max_steps=5", "--set", "training.output_dir=run",
             "--set", "training.eval_every=0", "--set", "training.checkpoint_every=0", "--set", "training.num_samples=2",
             "--set", "training.sample_steps=4", "--set", "training.log_every=5"])
assert code in (0, None), code
model = textdiff.load_pretrained("run/model")[0]
ids = model.generate(num_return_sequences=2, num_inference_steps=4, seed=0)
tags = PosOracle().tag("The Eagle is a coffee shop .".split())
score = evaluate.load(metric_path("distinct_n")).compute(predictions=["a b c", "a b d"])
print(json.dumps({"shape": list(ids.shape), "tags": tags, "metric": score}))
"""
    launcher = {"PYTHONPATH", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in launcher}
    env["TEXTDIFF_CACHE"] = str(tmp_path / "cache")
    done = subprocess.run([python, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"][0] == 2
    assert report["tags"] == ["DET", "NOUN", "VERB", "DET", "NOUN", "NOUN", "."]
    assert set(report["metric"]) >= {"dist-1", "dist-2"}
    assert (work / "run" / "model" / "config.json").is_file()
