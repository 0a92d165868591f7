"""`textdiff serve`'s API on a real localhost server (uvicorn in a thread) with a tiny untrained model: bad input
gets one 4xx JSON error, streams match plain requests, 50 concurrent clients are all served, a full queue says
503, and a client that disconnects frees its work."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import ServerThread, saved_web_model

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from textdiff.serving import DecodeService, ServerLimits, create_app

LIMITS = {"max_steps": 3000, "max_samples": 4, "max_queue": 64, "max_text_chars": 200, "max_body_bytes": 4096}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_web_model(tmp_path_factory.mktemp("web-model"))


@pytest.fixture(scope="module")
def service(model_dir):
    return DecodeService.from_pretrained(str(model_dir), ServerLimits(**LIMITS))


@pytest.fixture(scope="module")
def url(service):
    with ServerThread(create_app(service)) as address:
        yield address


def post(url: str, path: str, body, content_type: str = "application/json", timeout: float = 120):
    """(status, parsed JSON or raw text) of a POST; body: a JSON-able value, or bytes sent as they are."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return json.loads(response.read())


def stream_events(url: str, body: dict) -> tuple[int, list[tuple[str, dict]]]:
    status, text = post(url, "/api/stream", body)
    if status != 200:
        return status, text
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return status, events


def idle(url: str, timeout: float = 60) -> dict:
    """/api/status once nothing waits or runs."""
    deadline = time.monotonic() + timeout
    while True:
        status = get(url, "/api/status")
        if status["waiting"] == 0 and status["running"] == 0:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the server stayed busy: {status}")
        time.sleep(0.05)


# Each row: the body (a JSON value, or raw bytes), its content type, the status and a phrase of the error.
BAD_INPUTS = {
    "malformed JSON": (b'{"seed": 1', "application/json", 422, "not valid JSON"),
    "a list, not an object": ([1, 2], "application/json", 422, "body"),
    "not JSON at all": (b"seed=1", "text/plain", 415, "Content-Type: application/json"),
    "body too large": ({"prompt": "x" * 5000}, "application/json", 413, "4096 bytes"),
    "an unknown field": ({"temperature": 0.7}, "application/json", 422, "temperature: unknown field"),
    "a model path": ({"model": "/etc"}, "application/json", 422, "model: unknown field"),
    "zero steps": ({"steps": 0}, "application/json", 422, "steps"),
    "too many steps": ({"steps": 3001}, "application/json", 422, "at most 3000 denoising steps"),
    "steps as a string": ({"steps": "5"}, "application/json", 422, "steps"),
    "too many samples": ({"num_samples": 5}, "application/json", 422, "at most 4 texts"),
    "a negative seed": ({"seed": -1}, "application/json", 422, "seed"),
    "an unknown sampler": ({"sampler": "euler"}, "application/json", 422, "not one of"),
    "an unknown mode": ({"mode": "paint"}, "application/json", 422, "mode"),
    "an unknown control": ({"controls": {"sentiment": "happy"}}, "application/json", 422, "Unknown control kinds"),
    "a control without a classifier": ({"controls": {"pos": ["NOUN"]}}, "application/json", 422,
                                       "no classifier for ['pos']"),
    "a field value the classifier lacks": ({"controls": {"field_value": {"food": "Klingon"}}}, "application/json",
                                           422, "Klingon"),
    "a length past the positions": ({"controls": {"length": 99}}, "application/json", 422, "Length"),
    "Length with a prompt": ({"prompt": "The Eagle", "controls": {"length": 8}}, "application/json", 422,
                             "cannot be combined"),
    "a word outside the vocabulary": ({"prompt": "The Zorblax"}, "application/json", 422, "Zorblax"),
    "a prompt too long": ({"prompt": "The " * 60}, "application/json", 422, "at most 200 characters"),
    "a template without room": ({"prompt": "The <mask> " * 13}, "application/json", 422, "positions"),
    "more steps than the model has": ({"steps": 2500}, "application/json", 422, "num_inference_steps"),
    "too many guidance steps": ({"guidance_steps": 9}, "application/json", 422, "guidance_steps: at most 8"),
    "an edit without text": ({"mode": "edit"}, "application/json", 422, "needs the text"),
    "an edit strength past 1": ({"mode": "edit", "text": "The Eagle", "strength": 1.5}, "application/json", 422,
                                "strength"),
    "a kept word past the text": ({"mode": "edit", "text": "The Eagle", "keep": [5]}, "application/json", 422,
                                  "keep"),
    "text in a generation": ({"text": "The Eagle"}, "application/json", 422, 'belong to mode "edit"'),
}  # fmt: skip


@pytest.mark.parametrize("path", ["/api/generate", "/api/stream"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_clear_4xx(url, path, case):
    body, content_type, status, phrase = BAD_INPUTS[case]
    got, answer = post(url, path, body, content_type)
    assert got == status, answer
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    assert phrase in answer["error"], answer["error"]


def test_the_server_stays_healthy_after_bad_input(url):
    post(url, "/api/generate", b"{", "application/json")
    post(url, "/api/stream", {"controls": {"field_value": {"food": "Klingon"}}})
    before = idle(url)
    status, answer = post(url, "/api/generate", {"seed": 3, "steps": 5})
    assert status == 200 and len(answer["texts"]) == 1
    assert idle(url)["served"] == before["served"] + 1


def test_info_lists_the_models_controls(url):
    info = get(url, "/api/info")
    assert info["defaults"] == {"steps": 20, "sampler": "renoise", "clamp": False}
    assert info["controls"]["field_value"] == {"food": ["Chinese", "Italian"], "area": ["riverside"]}
    assert "pos" not in info["controls"] and info["limits"]["max_steps"] == 3000
    with urllib.request.urlopen(url + "/", timeout=30) as response:
        assert "textdiff" in response.read().decode()


def test_a_stream_is_the_plain_request_step_by_step(url):
    body = {"seed": 7, "steps": 12, "num_samples": 2, "prompt": "The Eagle"}
    status, plain = post(url, "/api/generate", body)
    assert status == 200
    status, events = stream_events(url, body)
    assert status == 200
    steps = [data for kind, data in events if kind == "step"]
    assert [kind for kind, _ in events] == ["step"] * 12 + ["done"]
    assert [s["step"] for s in steps] == list(range(12)) and all(s["num_steps"] == 12 for s in steps)
    assert [s["t"] for s in steps] == sorted((s["t"] for s in steps), reverse=True)
    assert steps[0]["noise"] > steps[-1]["noise"] > 0
    for s in steps:  # every position's word and confidence for both rows; the prompt is known from the first step
        assert len(s["words"]) == len(s["confidence"]) == 2
        assert all(row[:3] == ["[START]", "The", "Eagle"] for row in s["words"])
        assert all(0.0 <= c <= 1.0 for row in s["confidence"] for c in row)
    assert events[-1][1] == plain  # the same seed writes the same texts either way
    assert all(text.startswith("The Eagle") for text in plain["texts"])


def test_edit_mode_over_the_api(url):
    status, answer = post(url, "/api/generate", {"mode": "edit", "text": "The Eagle serves Italian food .",
                                                 "strength": 0.0})  # fmt: skip
    assert status == 200 and answer["texts"] == ["The Eagle serves Italian food ."]
    status, events = stream_events(url, {"mode": "edit", "text": "The Eagle serves Italian food .", "strength": 0.6,
                                         "keep": [0, 1], "seed": 1})  # fmt: skip
    assert status == 200 and events[-1][0] == "done"
    assert 0 < len(events) - 1 < 20  # a partial noising takes only the steps below its level
    assert events[-1][1]["texts"][0].startswith("The Eagle")
    status, events = stream_events(url, {"controls": {"field_value": {"food": "Chinese"}}, "steps": 6, "seed": 2})
    assert status == 200 and len(events) == 7  # a guided generation streams too


def test_fifty_concurrent_clients_are_all_served(url, service):
    """The bounded load test: 50 requests at once, queued on one worker; none lost, each the text of its seed."""
    before = idle(url)
    results: dict[int, tuple[int, dict, float]] = {}

    def client(seed: int) -> None:
        start = time.perf_counter()
        status, answer = post(url, "/api/generate", {"seed": seed, "steps": 10, "num_samples": 2})
        results[seed] = (status, answer, time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(50)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    wall = time.perf_counter() - start
    assert sorted(results) == list(range(50))
    assert all(status == 200 for status, _, _ in results.values()), [a for s, a, _ in results.values() if s != 200]
    after = idle(url)
    assert after["served"] - before["served"] == 50 and after["failed"] == before["failed"]
    for seed in (0, 17, 49):  # the same text a lone request writes
        assert post(url, "/api/generate", {"seed": seed, "steps": 10, "num_samples": 2})[1] == results[seed][1]
    latencies = sorted(latency for _, _, latency in results.values())
    print(
        f"50 concurrent requests in {wall:.2f} s: latency median {statistics.median(latencies):.3f} s, "
        f"p95 {latencies[47]:.3f} s, max {latencies[-1]:.3f} s"
    )


def test_a_full_queue_answers_503_and_recovers(model_dir):
    service = DecodeService.from_pretrained(str(model_dir), ServerLimits(max_queue=2, max_steps=2000))
    with ServerThread(create_app(service)) as url:
        answers = []
        threads = [
            threading.Thread(target=lambda s=s: answers.append(post(url, "/api/generate", {"steps": 1000, "seed": s})))
            for s in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        statuses = sorted(status for status, _ in answers)
        assert len(statuses) == 6 and set(statuses) == {200, 503} and statuses.count(200) >= 2
        busy = [answer for status, answer in answers if status == 503]
        assert all("busy" in answer["error"] for answer in busy)
        assert idle(url)["served"] == statuses.count(200)
        assert post(url, "/api/generate", {"steps": 5})[0] == 200


def open_stream(url: str, body: dict) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/api/stream", json.dumps(body), {"Content-Type": "application/json"})
    return connection


def test_a_client_that_disconnects_frees_its_work(model_dir):
    service = DecodeService.from_pretrained(str(model_dir), ServerLimits(max_steps=2000))
    with ServerThread(create_app(service)) as url:
        running = open_stream(url, {"steps": 1990, "num_samples": 4, "seed": 0})
        response = running.getresponse()
        assert response.status == 200 and response.readline().startswith(b"event: step")
        waiting = open_stream(url, {"steps": 1990, "seed": 1})  # queued behind the first
        deadline = time.monotonic() + 30
        while get(url, "/api/status")["waiting"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        waiting.close()  # leaves while queued: its decode never starts
        time.sleep(0.6)  # the queue notices within its 0.25 s poll
        running.close()  # leaves mid-decode: the decode stops at its next step
        status = idle(url)
        assert status["cancelled"] == 2 and status["served"] == 0
        assert status["steps_decoded"] < 1990  # the two asked for 3,980
        assert post(url, "/api/generate", {"steps": 5})[0] == 200  # and the worker is free


def test_serve_command_bad_arguments_are_one_line(tmp_path, capsys):
    from textdiff.cli import main

    for argv, phrase in (
        (["serve", "--model", str(tmp_path / "none")], "Cannot load"),
        (["serve", "--model", str(tmp_path), "--port", "70000"], "at most 65535"),
        (["serve", "--model", str(tmp_path), "--max-steps", "0"], "must be > 0"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and phrase in err and len(err.strip().splitlines()) == 1, err
