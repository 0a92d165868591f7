"""The denoising, live in a browser: `textdiff serve --model DIR` (FastAPI + uvicorn, `pip install "textdiff[serve]"`).

The page (`textdiff/web/index.html`, plain HTML and JavaScript, no build step) posts a request and reads the
decoding back as server-sent events, one per step, each with every position's word, its rounding confidence and
the step's noise level √(1 − ᾱ_t); it keeps them all, so a slider scrubs back through the trajectory.

    GET  /              the page
    GET  /api/info      the model's positions, samplers, decoding defaults, limits and the controls it takes
    POST /api/generate  a `DecodeRequest` -> {"texts": [...], "words": [[...]]}
    POST /api/stream    the same request -> text/event-stream: one `step` event per step, then `done`
    GET  /api/status    the queue: waiting, running, served, cancelled, failed, steps decoded

One model, loaded at start with its classifiers (no request names a path). Decodes run one at a time on a worker
thread in arrival order; at most `ServerLimits.max_queue` requests wait and later ones get 503. A client that
disconnects frees its place in the queue, or stops its decode at the next step. Bad input gets one 4xx JSON
`{"error": ...}` that names the field and the fix; a request's decoding is checked before its events start, so
a stream either fails with a 4xx or streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .decoding_config import DecodingConfig
from .guidance import CLASSIFIER_TASKS, MODEL_SCORERS, classifier_path, load_classifiers
from .guidance.controls import controls_from_dict
from .samplers import SAMPLERS
from .schedules import NoiseSchedule
from .tokenization import MASK, encode_infill, encode_prompt

logger = logging.getLogger(__name__)


@dataclass
class ServerLimits:
    """What one request may ask for; anything past a limit is a 4xx, never a long or large decode.

    Attributes:
        max_steps: Most denoising steps per request.
        max_samples: Most texts per request (the decoded batch).
        max_queue: Most requests waiting or running at once; the next gets 503.
        max_text_chars: Longest prompt, template, text to edit or words to mention.
        max_body_bytes: Largest request body.
        max_guidance_steps: Most guidance steps per denoising step.
    """

    max_steps: int = 1000
    max_samples: int = 8
    max_queue: int = 64
    max_text_chars: int = 500
    max_body_bytes: int = 16_384
    max_guidance_steps: int = 8

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServerLimits.{name} must be a positive integer, got {value!r}.")


class DecodeRequest(BaseModel):
    """One request of the page or the API. Every field is optional; unknown fields are an error.

    mode "generate": from pure noise, after `prompt`'s words, or filling the `<mask>`s of a template in `prompt`.
    mode "edit": `text` noised to `strength` and denoised back (SDEdit), keeping the word indices in `keep`.
    `controls` is the JSON form of `textdiff.guidance.controls_from_dict` (field_value, mentions, pos, spans,
    length). Decoding settings left out come from the model's generation config.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["generate", "edit"] = "generate"
    prompt: str = ""
    text: str = ""
    strength: float = Field(0.5, ge=0.0, le=1.0)
    keep: list[int] = Field(default_factory=list)
    num_samples: int = Field(1, ge=1)
    steps: int | None = Field(None, ge=1)
    sampler: str | None = None
    clamp: bool | None = None
    x0_temperature: float | None = Field(None, gt=0.0)
    seed: int = Field(0, ge=0, lt=2**63)
    controls: dict[str, Any] = Field(default_factory=dict)
    guidance_scale: float | None = Field(None, gt=0.0)
    guidance_steps: int | None = Field(None, ge=0)
    guidance_step_size: float | None = Field(None, gt=0.0)
    guidance_start: float | None = Field(None, ge=0.0, lt=1.0)


class RequestError(Exception):
    """A request the server will not decode: its HTTP status and the message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Cancelled(Exception):
    """Raised inside a decode whose client went away."""


@dataclass
class Decode:
    """A checked request: `model.generate` or `model.edit` and their arguments."""

    method: Literal["generate", "edit"]
    arguments: dict


@dataclass
class Event:
    """One message from a decode to its client: `step`, `done` or `error` (with an HTTP status)."""

    kind: Literal["step", "done", "error"]
    data: dict
    status: int = 200

    def sse(self) -> str:
        return f"event: {self.kind}\ndata: {json.dumps(self.data)}\n\n"


@dataclass(eq=False)
class Job:
    """A decode in the queue, its events for the client, and the flag a disconnect sets."""

    decode: Decode
    stream: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    async def next_event(self, request: Request) -> Event | None:
        """The job's next event, or None (and the job cancelled) if the client disconnects while it waits."""
        while True:
            try:
                return await asyncio.wait_for(self.events.get(), timeout=0.25)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    self.cancelled.set()
                    return None


class EventStreamer:
    """`generate(streamer=...)`: each step's words and confidences to the job's client (when it streams); stops
    the decode with `Cancelled` once the client is gone."""

    def __init__(self, service: DecodeService, job: Job) -> None:
        self.service, self.job = service, job

    def put(self, update) -> None:
        if self.job.cancelled.is_set():
            raise Cancelled
        self.service.count("steps_decoded")
        if self.job.stream:
            self.job.emit(Event("step", self.service.step_data(update)))

    def end(self) -> None:
        pass


def saved_classifiers(model_dir: str, device: torch.device | str | None = None) -> dict:
    """{task: classifier} for every classifier `textdiff train-classifier` saved beside the model."""
    tasks = [task for task in CLASSIFIER_TASKS if (classifier_path(model_dir, task) / "model.safetensors").is_file()]
    classifiers = load_classifiers(model_dir, tasks)
    return {task: classifier.to(device) for task, classifier in classifiers.items()} if device else classifiers


class DecodeService:
    """The model, its tokenizer and classifiers, the limits, and the one worker thread that decodes."""

    def __init__(self, model, tokenizer, classifiers: dict, limits: ServerLimits | None = None) -> None:
        self.model, self.tokenizer, self.classifiers = model.eval(), tokenizer, classifiers
        self.limits = limits or ServerLimits()
        config = model.config
        schedule = NoiseSchedule.from_name(config.noise_schedule, config.num_diffusion_steps)
        self.noise = (1 - schedule.alphas_cumprod).sqrt().tolist()  # σ_t = √(1 − ᾱ_t) per training timestep
        self.defaults = DecodingConfig.resolve(getattr(model, "generation_config", None))
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textdiff-decode")
        self.jobs: set[Job] = set()  # waiting or running
        self.lock = threading.Lock()
        self.counts = {"waiting": 0, "running": 0, "served": 0, "cancelled": 0, "failed": 0, "steps_decoded": 0}

    @classmethod
    def from_pretrained(cls, model_dir: str, limits: ServerLimits | None = None) -> DecodeService:
        """Serve a saved model with its tokenizer and every classifier saved beside it."""
        from .loading import load_pretrained

        model, tokenizer = load_pretrained(model_dir)
        return cls(model, tokenizer, saved_classifiers(model_dir), limits)

    def count(self, name: str, by: int = 1) -> None:
        with self.lock:
            self.counts[name] += by

    def info(self) -> dict:
        """What the page needs to build its form."""
        controls: dict[str, Any] = {"length": True, "mentions": "mentions" in MODEL_SCORERS}
        if "field_value" in self.classifiers:
            controls["field_value"] = self.classifiers["field_value"].config.fields
        if "pos" in self.classifiers:
            controls["pos"] = [t for t in self.classifiers["pos"].config.labels if t not in ("START", "END", "PAD")]
        if "spans" in self.classifiers:
            controls["spans"] = list(self.classifiers["spans"].config.labels[1:])
        return {
            "model": self.model.name_or_path or "textdiff model",
            "max_length": self.model.config.max_position_embeddings,
            "samplers": sorted(SAMPLERS),
            "defaults": {
                "steps": self.defaults.num_inference_steps,
                "sampler": self.defaults.sampler,
                "clamp": self.defaults.clamp,
            },
            "limits": asdict(self.limits),
            "controls": controls,
            "mask_token": MASK,
        }

    # -- checking a request ---------------------------------------------------------------------------------------

    def prepare(self, request: DecodeRequest) -> Decode:
        """Check a request against the limits and the model and turn it into a `Decode`; `RequestError` if not."""
        limits, tokenizer = self.limits, self.tokenizer
        if request.num_samples > limits.max_samples:
            raise RequestError(422, f"num_samples: at most {limits.max_samples} texts per request.")
        steps = request.steps or self.defaults.num_inference_steps
        if steps > limits.max_steps:
            raise RequestError(422, f"steps: at most {limits.max_steps} denoising steps per request.")
        if request.sampler is not None and request.sampler not in SAMPLERS:
            raise RequestError(422, f"sampler: {request.sampler!r} is not one of {sorted(SAMPLERS)}.")
        if request.guidance_steps is not None and request.guidance_steps > limits.max_guidance_steps:
            raise RequestError(422, f"guidance_steps: at most {limits.max_guidance_steps}.")
        for name in ("prompt", "text"):
            if len(getattr(request, name)) > limits.max_text_chars:
                raise RequestError(422, f"{name}: at most {limits.max_text_chars} characters.")
        if len(json.dumps(request.controls)) > limits.max_text_chars:
            raise RequestError(422, f"controls: at most {limits.max_text_chars} characters of JSON.")
        try:
            controls = controls_from_dict(request.controls, tokenizer) or None
        except ValueError as error:
            raise RequestError(422, f"controls: {error}") from None
        missing = {c.task for c in controls or []} - {None, *MODEL_SCORERS, *self.classifiers}
        if missing:
            takes = sorted(self.info()["controls"])
            raise RequestError(422, f"controls: this model has no classifier for {sorted(missing)}; it takes {takes}.")
        settings = {
            "num_inference_steps": steps, "sampler": request.sampler, "clamp": request.clamp,
            "x0_temperature": request.x0_temperature, "seed": request.seed,
            "controls": controls, "classifiers": self.classifiers,
            "guidance_scale": request.guidance_scale, "guidance_steps": request.guidance_steps,
            "guidance_step_size": request.guidance_step_size, "guidance_start": request.guidance_start,
        }  # fmt: skip
        settings = {name: value for name, value in settings.items() if value is not None}
        if request.mode == "edit":
            return Decode("edit", {**settings, **self._edit_inputs(request)})
        return Decode("generate", {**settings, **self._generate_inputs(request)})

    def _generate_inputs(self, request: DecodeRequest) -> dict:
        """num_return_sequences and, from `prompt`, the prompt's or the template's known words."""
        if request.text or request.keep:
            raise RequestError(422, 'text and keep belong to mode "edit"; a generation starts from `prompt`.')
        tokenizer, length = self.tokenizer, self.model.config.max_position_embeddings
        inputs: dict[str, Any] = {"num_return_sequences": request.num_samples}
        prompt = request.prompt.strip()
        if MASK in prompt.split():
            try:
                ids, mask = encode_infill(tokenizer, prompt, length)
            except ValueError as error:
                raise RequestError(422, f"prompt: {error}") from None
            inputs.update(input_ids=torch.tensor([ids]), infill_mask=torch.tensor([mask]))
        elif prompt:
            try:
                ids = encode_prompt(tokenizer, prompt)  # [START] w …
            except ValueError as error:
                raise RequestError(422, f"prompt: {error}") from None
            if len(ids) + 1 > length:
                words = len(ids) - 1
                raise RequestError(422, f"prompt: {words} words leave no room in the model's {length} positions.")
            inputs["input_ids"] = torch.tensor([ids])
        return inputs

    def _edit_inputs(self, request: DecodeRequest) -> dict:
        """input_ids (the text, once per sample), strength and keep_mask."""
        if request.prompt:
            raise RequestError(422, 'prompt belongs to mode "generate"; an edit rewrites `text`.')
        if not request.text.strip():
            raise RequestError(422, 'text: mode "edit" needs the text to rewrite.')
        ids = self.tokenizer([request.text.strip()] * request.num_samples, return_tensors="pt")["input_ids"]  # (B, P)
        if ids.shape[1] + 2 > self.model.config.max_position_embeddings:
            raise RequestError(422, f"text: {ids.shape[1]} words do not fit the model's positions; shorten it.")
        inputs: dict[str, Any] = {"input_ids": ids, "strength": request.strength}
        if request.keep:
            if not all(0 <= i < ids.shape[1] for i in request.keep):
                raise RequestError(422, f"keep: word indices must be between 0 and {ids.shape[1] - 1}.")
            keep_mask = torch.zeros(ids.shape, dtype=torch.bool)
            keep_mask[:, request.keep] = True
            inputs["keep_mask"] = keep_mask
        return inputs

    # -- decoding -------------------------------------------------------------------------------------------------

    def submit(self, decode: Decode, stream: bool) -> Job:
        """Queue a decode; 503 when `max_queue` requests are already waiting or running."""
        with self.lock:
            if self.counts["waiting"] + self.counts["running"] >= self.limits.max_queue:
                raise RequestError(503, f"The server is busy ({self.limits.max_queue} requests queued); retry.")
            self.counts["waiting"] += 1
            job = Job(decode, stream, asyncio.get_running_loop())
            self.jobs.add(job)
        self.worker.submit(self._run, job)
        return job

    def close(self) -> None:
        """Stop every waiting or running decode at its next step and let the worker go (the server's shutdown)."""
        with self.lock:
            for job in self.jobs:
                job.cancelled.set()
        self.worker.shutdown(wait=False)

    def _run(self, job: Job) -> None:
        """The worker thread: decode one job, unless its client left while it waited."""
        with self.lock:
            self.counts["waiting"] -= 1
            self.counts["running"] += 1
        outcome = "served"
        try:
            if job.cancelled.is_set():
                raise Cancelled
            method = getattr(self.model, job.decode.method)
            sequences = method(**job.decode.arguments, streamer=EventStreamer(self, job))
            job.emit(Event("done", self.result(sequences)))
        except Cancelled:
            outcome = "cancelled"
        except ValueError as error:  # what only the decoding can check, e.g. a field value no classifier knows
            outcome = "failed"
            job.emit(Event("error", {"error": str(error)}, 422))
        except Exception:
            outcome = "failed"
            logger.exception("decode failed")
            job.emit(Event("error", {"error": "The decode failed on the server; see its log."}, 500))
        finally:
            with self.lock:
                self.jobs.discard(job)
                self.counts["running"] -= 1
                self.counts[outcome] += 1

    def words(self, ids: torch.Tensor) -> list[list[str]]:
        """(B, L) ids -> B lists of L words, padding as ""."""
        pad = self.tokenizer.pad_token
        return [["" if w == pad else w for w in self.tokenizer.convert_ids_to_tokens(row)] for row in ids.tolist()]

    def step_data(self, update) -> dict:
        return {
            "step": update.step,
            "num_steps": update.num_steps,
            "t": update.t,
            "noise": round(self.noise[update.t], 4),
            "words": self.words(update.ids),
            "confidence": [[round(c, 3) for c in row] for row in update.confidence.tolist()],
        }

    def result(self, sequences: torch.Tensor) -> dict:
        return {
            "texts": self.tokenizer.batch_decode(sequences, skip_special_tokens=True),
            "words": self.words(sequences),
        }


def create_app(service: DecodeService) -> FastAPI:
    """The FastAPI application serving `service`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(title="textdiff", docs_url="/api/docs", redoc_url=None, lifespan=lifespan)
    page = resources.files("textdiff").joinpath("web/index.html").read_text(encoding="utf-8")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in exc.errors():
            where = ".".join(str(part) for part in problem["loc"] if part != "body")
            if problem["type"] == "json_invalid":
                problems.append(f"the body is not valid JSON ({problem['ctx']['error']}); send a JSON object.")
            elif problem["type"] == "extra_forbidden":
                problems.append(
                    f"{where}: unknown field; the request's fields are in GET /openapi.json (DecodeRequest)."
                )
            else:
                problems.append(f"{where or 'body'}: {problem['msg']}.")
        return error(422, " ".join(problems))

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if request.method == "POST":
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return error(415, "Send the request as JSON (Content-Type: application/json).")
            declared = request.headers.get("content-length", "")
            if not declared.isdigit():
                return error(411, "Send the body with a Content-Length header.")
            if int(declared) > service.limits.max_body_bytes:
                return error(413, f"The body is over {service.limits.max_body_bytes} bytes; send a smaller request.")
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/api/info")
    async def info() -> dict:
        return service.info()

    @app.get("/api/status")
    async def status() -> dict:
        with service.lock:
            return dict(service.counts)

    @app.post("/api/generate")
    async def generate(body: DecodeRequest, request: Request) -> Response:
        job = service.submit(service.prepare(body), stream=False)
        event = await job.next_event(request)
        if event is None:
            return Response(status_code=499)  # the client is gone
        return JSONResponse(event.data, status_code=event.status)

    @app.post("/api/stream")
    async def stream(body: DecodeRequest, request: Request) -> Response:
        job = service.submit(service.prepare(body), stream=True)
        first = await job.next_event(request)  # the decode's checks pass (a step) or fail (a 4xx) first
        if first is None:
            return Response(status_code=499)
        if first.kind == "error":
            return error(first.status, first.data["error"])

        async def events():
            try:
                event = first
                while True:
                    yield event.sse()
                    if event.kind != "step":
                        return
                    event = await job.events.get()
            finally:  # the client disconnected (Starlette cancels this generator) or the decode ended
                job.cancelled.set()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.state.service = service
    return app


def serve(service: DecodeService, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page and its API until interrupted."""
    import uvicorn

    logger.info("textdiff: serving %s at http://%s:%d", service.model.name_or_path, host, port)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")
