"""Loopback load test of `lenet-tf serve`: requests/s, p50/p99 latency and errors per API and concurrency.

Starts the server on a free 127.0.0.1 port, then for each API -- TF Serving JSON with one MNIST test digit, and
POST /predict with a PNG upload of one -- and each concurrency (default 1, 8, 32, 128) runs a load generator in a
separate process: raw asyncio sockets (uvloop when installed), one keep-alive connection per client, a client
sends its next request when the previous answer is in, and never retries (a 503 counts as an error). Each answer is
checked afterwards: 200 and the class the model gives in-process for that digit. Then the same TF Serving load at
concurrency 32 is sent to a server started with --max-batch-size 1 (one model call per request) for the ratio.
Prints the CPU's name; run it alone (flock /tmp/lenet-heavy.lock python benchmarks/load.py).
Usage: python benchmarks/load.py [--checkpoint SavedModel] [--seconds 5] [--concurrency 1 8 32 128]
"""

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DIGITS = 200


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        name = ""
    return f"{name or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


def request_bytes(path: str, content_type: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Client(asyncio.Protocol):
    """One keep-alive connection sending ``requests`` in turn until ``stop_at``; records (index, seconds, raw
    answer) per request."""

    def __init__(self, requests: list[bytes], first: int, stop_at: float, done: asyncio.Future) -> None:
        self.requests, self.index, self.stop_at, self.done = requests, first, stop_at, done
        self.results, self.buffer, self.sent_at, self.expected = [], b"", 0.0, None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        if time.perf_counter() >= self.stop_at:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.requests[self.index % len(self.requests)])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.expected is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = head.find(b"content-length:")
            self.expected = end + 4 + int(head[length + 15:].split(b"\r\n", 1)[0]) if length >= 0 else end + 4
        if len(self.buffer) < self.expected:
            return
        answer, self.buffer, self.expected = self.buffer[:self.expected], self.buffer[self.expected:], None
        self.results.append((self.index % len(self.requests), time.perf_counter() - self.sent_at, answer))
        self.index += 1
        if b"connection: close" in answer[:answer.find(b"\r\n\r\n")].lower():
            self.transport.close()
        else:
            self.send()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def generate(port: int, requests: list[bytes], clients: int, seconds: float) -> list:
    loop = asyncio.get_running_loop()
    stop_at = time.perf_counter() + seconds
    protocols = []
    for k in range(clients):
        done = loop.create_future()
        _, protocol = await loop.create_connection(
            lambda: Client(requests, k * 7, stop_at, done), "127.0.0.1", port)
        protocols.append(protocol)
    await asyncio.wait([p.done for p in protocols], timeout=seconds + 60)
    return [r for p in protocols for r in p.results]


def generator_main() -> None:
    """The load generator's process: reads its job as JSON on stdin, writes results as JSON on stdout."""
    job = json.loads(sys.stdin.read())
    requests = [base64.b64decode(r) for r in job["requests"]]
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    began = time.perf_counter()
    results = run(generate(job["port"], requests, job["clients"], job["seconds"]))
    elapsed = time.perf_counter() - began
    json.dump({"elapsed": elapsed, "results": [(i, s, base64.b64encode(a).decode()) for i, s, a in results]},
              sys.stdout)


def run_load(port: int, requests: list[bytes], clients: int, seconds: float) -> tuple[float, list]:
    job = json.dumps({"port": port, "requests": [base64.b64encode(r).decode() for r in requests],
                      "clients": clients, "seconds": seconds})
    done = subprocess.run([sys.executable, "-P", __file__, "--generator"], input=job, capture_output=True, text=True,
                          timeout=seconds + 120)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed: {done.stderr.strip()[-500:]}")
    out = json.loads(done.stdout)
    return out["elapsed"], [(i, s, base64.b64decode(a)) for i, s, a in out["results"]]


def answered_class(answer: bytes) -> tuple[int, int | None]:
    """The status and predicted class of a raw HTTP answer (None when not a prediction)."""
    status = int(answer[9:12])
    body = json.loads(answer[answer.find(b"\r\n\r\n") + 4:] or b"{}")
    if status != 200:
        return status, None
    if "predictions" in body:
        return status, body["predictions"][0]["classes"]
    return status, body.get("digit")


def figures(elapsed: float, results: list, expected: list[int]) -> dict:
    latencies = np.array([s for _, s, _ in results]) * 1000
    wrong = errors = 0
    for index, _, answer in results:
        status, digit = answered_class(answer)
        errors += status != 200
        wrong += status == 200 and digit != expected[index]
    return {"requests": len(results), "requests_per_s": len(results) / elapsed,
            "p50_ms": float(np.percentile(latencies, 50)) if len(results) else None,
            "p99_ms": float(np.percentile(latencies, 99)) if len(results) else None,
            "errors": errors, "wrong": wrong}


class Server:
    """``lenet-tf serve`` on a free loopback port, started and stopped around a ``with`` block."""

    def __init__(self, checkpoint: str, *flags: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.command = [sys.executable, "-P", "-m", "lenet_tf", "serve", "--checkpoint", checkpoint,
                        "--port", str(self.port), *flags]

    def __enter__(self) -> "Server":
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stderr], daemon=True).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("serving on"):
                return self
        self.process.kill()
        raise SystemExit("the server did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def trained_checkpoint(path: str, keep: list) -> str:
    """``path`` when it holds a training run, else a one-epoch model trained into a temporary folder."""
    if (Path(path) / "run.json").exists():
        return path
    from lenet_tf.data.mnist import load_mnist, split
    from lenet_tf.training.trainer import TrainConfig, train

    folder = tempfile.TemporaryDirectory(prefix="lenet-load-")
    keep.append(folder)
    print(f"{path}: no trained run there; training one epoch into {folder.name}", flush=True)
    train(TrainConfig(epochs=1), Path(folder.name) / "model", splits=split(load_mnist(), 5000, 0), progress=False)
    return str(Path(folder.name) / "model")


def workloads(checkpoint: str) -> dict:
    """Per API: the raw requests (one digit each) and the class the model gives each in-process."""
    from PIL import Image

    from lenet_tf.data.mnist import load_mnist
    from lenet_tf.trained import TrainedModel

    digits = load_mnist().test_images[:DIGITS]
    with TrainedModel(checkpoint) as model:
        classes = model.predict(digits).classes.tolist()
    tf_serving = [request_bytes("/v1/models/lenet5:predict", "application/json",
                                json.dumps({"instances": [d.tolist()]}, separators=(",", ":")).encode())
                  for d in digits]
    pngs = []
    for digit in digits:
        buffer = io.BytesIO()
        Image.fromarray(255 - digit).resize((112, 112), Image.BICUBIC).save(buffer, format="PNG")
        pngs.append(request_bytes("/predict", "image/png", buffer.getvalue()))
    # The PNG route prepares the picture like `lenet-tf predict`: its expected classes are the in-process ones of
    # the prepared digits.
    from lenet_tf.serving.uploads import image_digit

    prepared = np.stack([image_digit(r[r.find(b"\r\n\r\n") + 4:]) for r in pngs])
    with TrainedModel(checkpoint) as model:
        png_classes = model.predict(prepared).classes.tolist()
    return {"tf_serving_json": (tf_serving, classes), "png_upload": (pngs, png_classes)}


def main() -> int:
    if "--generator" in sys.argv:
        generator_main()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="SavedModel",
                        help="training folder (default: SavedModel; without a run there, one epoch is trained)")
    parser.add_argument("--seconds", type=float, default=5, help="load per API and concurrency (default: 5)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128],
                        help="clients at once (default: 1 8 32 128)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    keep = []
    checkpoint = trained_checkpoint(args.checkpoint, keep)
    loads = workloads(checkpoint)
    print(f"CPU: {cpu_name()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; loopback, client in a "
          "separate process on the same machine, no retries")
    print(f"{'api':<16} {'server':<12} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'wrong':>6} {'requests':>9}")
    rows = []

    def measure(api: str, server: Server, label: str, clients: int) -> dict:
        requests, expected = loads[api]
        run_load(server.port, requests, min(clients, 8), 0.5)  # warm-up
        row = {"api": api, "server": label, "clients": clients,
               **figures(*run_load(server.port, requests, clients, args.seconds), expected)}
        print(f"{api:<16} {label:<12} {clients:>7} {row['requests_per_s']:>8.0f} {row['p50_ms']:>8.1f} "
              f"{row['p99_ms']:>8.1f} {row['errors']:>7} {row['wrong']:>6} {row['requests']:>9}", flush=True)
        rows.append(row)
        return row

    with Server(checkpoint) as server:
        for api in loads:
            for clients in args.concurrency:
                measure(api, server, "batching", clients)
    with Server(checkpoint, "--max-batch-size", "1") as server:
        unbatched = measure("tf_serving_json", server, "batch size 1", 32)
    batched = next((r for r in rows if r["api"] == "tf_serving_json" and r["clients"] == 32
                    and r["server"] == "batching"), None)
    if batched:
        print(f"micro-batching / one call per request at 32 clients: "
              f"{batched['requests_per_s'] / unbatched['requests_per_s']:.2f}x requests/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2))
    return 0 if all(r["errors"] == 0 and r["wrong"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
