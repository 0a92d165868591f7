"""The denoiser's forward as compiled graphs, for decoding (issue 15, "lean steps").

A step of a small denoiser at batch 1 is mostly the cost of dispatching its ≈ 60 operations one by one from
Python, not their arithmetic. `torch.compile` (inductor) turns the forward into one graph of fused C++ kernels;
two inductor options matter on a CPU (docs/RESULTS.md, issue 15: the e2e-tiny network at batch 1, 22 positions,
one thread: eager 0.86 ms, compiled 0.65, with a C++ wrapper 0.58, with frozen weights too 0.48):

- `freezing`: the weights become constants of the graph (folded, and their layouts packed once for the matmul
  library), which only holds while no gradient is taken — decoding runs under `torch.no_grad`;
- `cpp_wrapper`: the graph's kernels are called from generated C++ instead of generated Python.

With nothing to do between two steps (no step processors) and a sampler whose step is a pure function, the whole
loop — every forward, every sampler step, the final rounding — is one graph (`CompiledForward.loop`, up to
`MAX_UNROLLED_STEPS` steps): one call per decoding instead of one per step, with the ε of each step drawn beforehand from the request's generator in the
order eager decoding draws them (the same text for the same seed).

One static graph per input signature (shapes, dtypes, which inputs are given, the x̂0 temperature): compiled on its
first use (seconds; inductor's on-disk cache makes the same shape faster in a later process). Dynamic-shape graphs
were slower than eager here (0.90 ms), so none are made. Dynamo keeps its graphs per Python code object and, on
every call, checks the guards of each graph of that code object until one holds — with the ≈ 30 widths one batch-1
server meets, that search cost ≈ 0.2 ms a call, a third of the graph. So each signature gets its own copy of a
one-line function (its own code object, one graph) and `CompiledForward` picks it from a dict.

Frozen weights are constants: `compiled_forward`, called once per decoding, keys the graphs on the parameters'
storage and version counters, and when any changed (training between two decodings, `load_state_dict`) it drops
them all and compiles afresh.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch

INDUCTOR_OPTIONS = {"freezing": True, "cpp_wrapper": True}
# The most steps unrolled into one loop graph: its compile time grows with the steps (≈ 40 s for 8 steps of the
# e2e-tiny network on this CPU, against ≈ 4 s for one forward), so longer loops run step by step.
MAX_UNROLLED_STEPS = 16


def _with_own_code(function: Callable, name: str) -> Callable:
    """The same function on a copy of its code object, so that dynamo keeps its graphs apart from every other's."""
    code = function.__code__.replace(co_name=name)
    return types.FunctionType(code, function.__globals__, name, function.__defaults__, function.__closure__)


def _own_copy_of_forward(model: torch.nn.Module, name: str) -> Callable:
    """`model(...)` as a function with a code object of its own (the model in its closure, so that its weights are
    the graph's attributes, which freezing folds; passed as an argument they would be inputs, and not frozen)."""

    def forward(*args, **kwargs):
        return model(*args, **kwargs)

    return _with_own_code(forward, name)


def _own_copy_of_loop(model: torch.nn.Module, sampler, name: str) -> Callable:
    """The denoising loop of `sampler`'s timesteps as a function with a code object of its own:
    (x_T (B, L, d), the ε of each step that draws one, the forward's keyword arguments) -> (x_0 (B, L, d), its word
    scores (B, L, V), its words (B, L))."""
    timesteps = sampler.timesteps.tolist()

    def loop(x, noises, **kwargs):
        drawn = iter(noises)
        for t in timesteps:
            pred_x0 = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device), **kwargs).pred_x0
            x = sampler.step(pred_x0, t, x, noise=next(drawn) if sampler.draws_noise(t) else None).prev_sample
        scores = model.word_scores(x)
        return x, scores, scores.max(-1).indices

    return _with_own_code(loop, name)


def _signature(args: tuple, kwargs: dict) -> tuple:
    """What a static graph is specialised on: each tensor's shape, dtype and device, every other value itself."""
    describe = lambda v: (tuple(v.shape), v.dtype, v.device) if isinstance(v, torch.Tensor) else v
    return tuple(map(describe, args)), tuple((k, describe(v)) for k, v in sorted(kwargs.items()))


class CompiledForward:
    """`model(...)` through compiled graphs with the weights frozen in, one per input signature; call it under
    `torch.no_grad()` (see `compiled_forward`, which makes it).

    Args:
        model: The module to compile (in eval mode: dropout is compiled as it is when a graph is made).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.graphs: dict[tuple, Callable] = {}  # signature -> its compiled copy of the forward

    def __call__(self, *args, **kwargs):
        """model(*args, **kwargs)."""
        return self._run(_signature(args, kwargs), lambda name: _own_copy_of_forward(self.model, name), args, kwargs)

    def loop(self, sampler, x: torch.Tensor, noises: tuple[torch.Tensor, ...], **kwargs):
        """All of `sampler`'s steps from x_T (B, L, d) as one graph (a sampler with `unrollable`): `noises` are the
        ε (B, L, d) of the steps that draw one, in order; `kwargs` go to every forward. Returns x_0 (B, L, d), its
        word scores (B, L, V) and its words (B, L)."""
        if not sampler.unrollable:
            raise ValueError(f"{type(sampler).__name__} carries state between steps; its loop cannot be one graph.")
        timesteps = tuple(sampler.timesteps.tolist())
        steps = (  # what the graph bakes in as constants: the timesteps, ᾱ at each, the sampler's own settings
            type(sampler), timesteps, tuple(sampler.alpha_bar(t) for t in timesteps),
            tuple(sorted((k, v) for k, v in vars(sampler).items() if isinstance(v, (bool, int, float, str)))),
        )  # fmt: skip
        signature = ("loop", steps, _signature((x, *noises), kwargs))
        return self._run(signature, lambda name: _own_copy_of_loop(self.model, sampler, name), (x, noises), kwargs)

    def _run(self, signature: tuple, make: Callable[[str], Callable], args: tuple, kwargs: dict):
        """The graph of `signature` (compiled from `make(name)` on first use) on the arguments."""
        if torch.is_grad_enabled():
            raise ValueError("A compiled forward freezes the weights: call it under torch.no_grad() (decoding).")
        signature = (self.model.training, signature)  # dropout on or off is compiled in too
        graph = self.graphs.get(signature)
        if graph is None:  # dynamo's guards hold on this first call; on later ones, the signature is the guard
            graph = self.graphs[signature] = torch.compile(
                make(f"graph_{len(self.graphs)}"), dynamic=False, options=INDUCTOR_OPTIONS
            )
            return graph(*args, **kwargs)
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            return graph(*args, **kwargs)


def compiled_forward(model: torch.nn.Module) -> CompiledForward:
    """The model's compiled forward for the decoding about to run: kept on the model between decodings (its graphs
    are reused), made afresh when the weights changed since."""
    weights = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())
    kept = model.__dict__.get("_textdiff_compiled")  # (weights, CompiledForward): a plain attribute, not a submodule
    if kept is None or kept[0] != weights:
        kept = model.__dict__["_textdiff_compiled"] = (weights, CompiledForward(model))
    return kept[1]
