"""Benchmark the simulator: 25-test pages per second, and latency that does not serialise.

Starts ``python -m testio_sync.simulator --port 0`` (seed scale) in a subprocess
on 127.0.0.1, sends a bounded number of ``exploratory_tests?page=N&per_page=25``
requests with a fixed concurrency, then checks that 10 concurrent requests with
200 ms of simulated latency take about 200 ms in total, not 2 s. Prints the
figures and exits 0 when both meet their floor, 1 otherwise.

    python scripts/bench_simulator.py [--requests 3000] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
READY_TIMEOUT_S = 30.0
LATENCY_MS = 200
LATENCY_CEILING_S = 1.0  # 10 x 200 ms run one after the other would take 2 s


def start_simulator(scale: str) -> tuple[subprocess.Popen[str], str]:
    """The subprocess and its base URL, read from the one line it prints when listening."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable, "-m", "testio_sync.simulator", "--host", "127.0.0.1", "--port", "0",
        "--scale", scale, "--seed", "1", "--token", TOKEN, "--log-level", "WARNING",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(READY_TIMEOUT_S)
    prefix = "Simulator listening on "
    if not line or not line[0].startswith(prefix):
        process.kill()
        process.wait()
        raise SystemExit(f"the simulator did not start: {line[0] if line else 'no output'!r}")
    return process, line[0][len(prefix) :].strip()


def stop_simulator(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def page_paths(client: httpx.AsyncClient) -> list[str]:
    """Every full 25-test page of every product, so the run touches all cached payloads."""
    products = (await client.get("/products")).json()["products"]
    truth = (await client.get(client.base_url.copy_with(path="/_simulator/truth"))).json()
    paths = []
    for product in products:
        pages = truth["per_product"][str(product["id"])]["tests"] // 25
        paths += [
            f"/products/{product['id']}/exploratory_tests?page={page}&per_page=25"
            for page in range(1, pages + 1)
        ]
    return paths


async def measure_throughput(base_url: str, requests: int, concurrency: int) -> tuple[float, int]:
    """Requests per second over ``requests`` page fetches, and how many were not 200."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Token {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:
        paths = itertools.cycle(await page_paths(client))
        todo = iter(range(requests))
        failures = 0

        async def worker() -> None:
            nonlocal failures
            for _ in todo:
                response = await client.get(next(paths))
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started), failures


async def measure_latency_overlap(base_url: str, root_url: str) -> float:
    """Seconds for 10 concurrent requests while every answer is delayed by 200 ms."""
    headers = {"Authorization": f"Token {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        await client.post(f"{root_url}/_simulator/faults", json={"latency_ms": LATENCY_MS})
        try:
            started = time.perf_counter()
            answers = await asyncio.gather(*(client.get("/products") for _ in range(10)))
            elapsed = time.perf_counter() - started
        finally:
            await client.delete(f"{root_url}/_simulator/faults")
    if any(answer.status_code != 200 for answer in answers):
        raise SystemExit("latency check: a request failed")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--floor", type=float, default=300.0, help="requests/s to reach")
    parser.add_argument("--scale", default="seed")
    args = parser.parse_args(argv)

    process, base_url = start_simulator(args.scale)
    root_url = base_url.removesuffix("/customer/v2")
    server = psutil.Process(process.pid)
    try:
        cpu_before = sum(server.cpu_times()[:2])
        rate, failures = asyncio.run(measure_throughput(base_url, args.requests, args.concurrency))
        server_cpu_ms = (sum(server.cpu_times()[:2]) - cpu_before) / args.requests * 1000
        overlap_s = asyncio.run(measure_latency_overlap(base_url, root_url))
    finally:
        stop_simulator(process)

    rate_ok = rate >= args.floor and failures == 0
    overlap_ok = overlap_s < LATENCY_CEILING_S
    print(
        f"throughput: {rate:.0f} requests/s for 25-test pages "
        f"({args.requests} requests, concurrency {args.concurrency}, {failures} failed); "
        f"floor {args.floor:.0f}: {'ok' if rate_ok else 'BELOW FLOOR'}"
    )
    # The client shares the machine; the server's own cost per request shows its headroom.
    print(f"server CPU: {server_cpu_ms:.2f} ms per request")
    print(
        f"latency: 10 concurrent requests at {LATENCY_MS} ms took {overlap_s * 1000:.0f} ms; "
        f"ceiling {LATENCY_CEILING_S * 1000:.0f} ms: {'ok' if overlap_ok else 'SERIALISED'}"
    )
    return 0 if rate_ok and overlap_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
