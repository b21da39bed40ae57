"""Bounded loopback load test of `lenet-tf serve`: requests/s and latency percentiles of POST /predict.

Starts the server on a free 127.0.0.1 port, sends --requests PNG digits (MNIST test images) from
--concurrency threads, prints the figures, checks /health afterwards and stops the server.
Usage: python benchmarks/load.py [--checkpoint SavedModel] [--requests 2000] [--concurrency 8]
"""

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image

from lenet_tf.data.mnist import load_mnist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit("the server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="SavedModel", help="training folder (default: SavedModel)")
    parser.add_argument("--requests", type=int, default=2000, help="requests in all (default: 2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: 8)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    digits = load_mnist().test_images[:200]
    bodies = []
    for digit in digits:
        buffer = io.BytesIO()
        Image.fromarray(255 - digit).resize((112, 112)).save(buffer, format="PNG")
        bodies.append(buffer.getvalue())

    url = f"http://127.0.0.1:{free_port()}"
    server = subprocess.Popen([sys.executable, "-m", "lenet_tf", "serve", "--checkpoint", args.checkpoint,
                               "--port", url.rsplit(":", 1)[1]], stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url)
        with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=args.concurrency)) as client:
            def one(i: int) -> tuple[float, int]:
                began = time.perf_counter()
                response = client.post("/predict", content=bodies[i % len(bodies)],
                                       headers={"Content-Type": "image/png"})
                return time.perf_counter() - began, response.status_code

            for i in range(20):  # warm-up
                one(i)
            began = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(one, range(args.requests)))
            elapsed = time.perf_counter() - began
            healthy = client.get("/health").status_code == 200
        latencies = sorted(r[0] * 1000 for r in results)
        figures = {
            "requests": args.requests, "concurrency": args.concurrency,
            "ok": sum(r[1] == 200 for r in results), "requests_per_s": args.requests / elapsed,
            "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
            "healthy_after": healthy,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{figures['ok']}/{args.requests} OK, {figures['requests_per_s']:.0f} requests/s, "
          f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, healthy after: {healthy}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0 if figures["ok"] == args.requests and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
