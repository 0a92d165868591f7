"""A bounded load test of `textdiff serve` on localhost: N clients at once, each asking for its own seed, against
the API (`/api/generate`) and the stream (`/api/stream`, every step's event read). The server is `textdiff serve`
in its own process; the clients are threads of this one. Reports what came back (nothing may be lost: every answer
a 200 with its texts, a stream with every step and `done`) and the latencies.

    python bench/serve_load.py --model runs/e2e-tiny/model --clients 50 --threads 0 1

`--threads`: one server after the other with that many torch threads (0: torch's default); ratios printed last.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def request(url: str, path: str, body: dict) -> tuple[int, str]:
    data = json.dumps(body).encode()
    call = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(call, timeout=600) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def load(url: str, path: str, clients: int, body: dict, steps: int) -> dict:
    """Fire `clients` requests at once; check each answer; the latencies."""
    answers: dict[int, tuple[int, str, float]] = {}

    def client(seed: int) -> None:
        start = time.perf_counter()
        status, text = request(url, path, {**body, "seed": seed})
        answers[seed] = (status, text, time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    complete = 0
    for status, text, _ in answers.values():
        if status != 200:
            continue
        if path == "/api/stream":
            kinds = [block.split("\n", 1)[0] for block in text.strip().split("\n\n")]
            complete += kinds == ["event: step"] * steps + ["event: done"]
        else:
            complete += len(json.loads(text)["texts"]) == body.get("num_samples", 1)
    latencies = sorted(latency for _, _, latency in answers.values())
    p95 = latencies[max(0, round(0.95 * clients) - 1)]
    return {
        "path": path, "clients": clients, "complete": complete, "wall_s": wall,
        "median_s": statistics.median(latencies), "p95_s": p95, "max_s": latencies[-1],
    }  # fmt: skip


def measure(model: str, clients: int, body: dict, threads: int) -> dict:
    """Start `textdiff serve` with `threads` torch threads, time one request alone, then both loads; stop it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "textdiff.cli", "serve", "--model", model, "--port", str(port),
               "--max-queue", str(max(64, clients))] + (["--threads", str(threads)] if threads else [])  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/api/info", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        request(url, "/api/generate", {"steps": 2})  # warm up
        start = time.perf_counter()
        request(url, "/api/generate", {**body, "seed": 0})
        alone = time.perf_counter() - start
        print(f"threads {threads or 'default'}: one request alone {alone:.3f} s")
        rows = {}
        for path in ("/api/generate", "/api/stream"):
            row = rows[path] = load(url, path, clients, body, body["steps"])
            print(
                f"  {row['path']:14s} {row['complete']}/{row['clients']} complete in {row['wall_s']:.2f} s "
                f"({row['wall_s'] / clients:.3f} s per request); latency median {row['median_s']:.2f} s, "
                f"p95 {row['p95_s']:.2f} s, max {row['max_s']:.2f} s"
            )
        print("  server:", urllib.request.urlopen(url + "/api/status", timeout=5).read().decode())
        return {"alone": alone, **{path: row["wall_s"] / clients for path, row in rows.items()}}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[0], help="torch threads per server run (0: default)")
    args = parser.parse_args()
    body = {"steps": args.steps, "num_samples": args.num_samples}
    print(f"{args.clients} clients at once, {args.steps} steps, {args.num_samples} text(s) each")
    results = {threads: measure(args.model, args.clients, body, threads) for threads in args.threads}
    base = args.threads[0]
    for threads, row in results.items():
        print(
            f"threads {threads or 'default'}: seconds per request under load / alone: generate "
            f"{row['/api/generate'] / row['alone']:.2f}x, stream {row['/api/stream'] / row['alone']:.2f}x; "
            f"stream / generate {row['/api/stream'] / row['/api/generate']:.2f}x; against threads {base or 'default'}: "
            f"generate {row['/api/generate'] / results[base]['/api/generate']:.2f}x, "
            f"stream {row['/api/stream'] / results[base]['/api/stream']:.2f}x"
        )


if __name__ == "__main__":
    main()
