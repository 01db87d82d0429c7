"""Inbound alert -> paper order latency under a steady alert rate, over real HTTP on loopback.

    python benchmarks/webhook_bench.py [--rate 200] [--seconds 10]

Each alert is signed, scored by the agent, sized, placed on the paper broker and logged
in memory before the response returns; latency is send-to-response at the client. A
feed thread delivers a bar every 0.5 s so orders fill as they would live. Target
(issue 7): p99 <= 20 ms at 200 alerts/s on the 2-core machine. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import aiohttp
import numpy as np

from memlab.agent import MemoryAgent
from memlab.connectors import Bar, PaperBroker, PaperConnection
from memlab.data import synthetic_ohlcv
from memlab.webhooks import AlertRouter, WebhookConfig, WebhookServer
from memlab.webhooks.alerts import sign

SECRET = "bench-secret"


async def fire(url: str, rate: float, seconds: float, tag: str) -> list[float]:
    latencies: list[float] = []
    n = int(rate * seconds)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            body = json.dumps({"id": f"{tag}-{i}", "symbol": "BTC/USDT", "side": "buy" if i % 2 else "sell",
                               "qty": 0.001, "time": datetime.now(UTC).isoformat()}).encode()
            headers = {"X-Memlab-Signature": sign(body, SECRET), "Content-Type": "application/json"}
            t = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status not in (200, 422):  # 422: a sell with nothing yet to sell
                    raise RuntimeError(f"alert {i}: HTTP {resp.status}")
            latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return latencies


def _client(url: str, rate: float, seconds: float, tag: str) -> list[float]:
    return asyncio.run(fire(url, rate, seconds, tag))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-feed", action="store_true", help="no bars during the run (orders stay open)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    root = Path(tempfile.mkdtemp(prefix="memlab-webhook-bench-"))
    bars = synthetic_ohlcv(600, freq="1min", seed=3)
    agent = MemoryAgent(root, agent_id="bench")
    broker = PaperBroker(root, balances={"USDT": 1_000_000.0, "BTC": 10.0}, fees=0.001)
    broker.add_market("BTC/USDT")
    t0 = bars.index[-1].timestamp()
    broker.on_bar("BTC/USDT", Bar(t0, 100, 101, 99, 100))
    stop = threading.Event()

    def feed() -> None:
        k = 1
        while not stop.wait(0.5):
            broker.on_bar("BTC/USDT", Bar(t0 + 60 * k, 100, 101, 99, 100))
            k += 1

    router = AlertRouter(agent, PaperConnection("paper", broker), lambda s: bars)
    config = WebhookConfig(port=0, rate=args.rate * 2, burst=int(args.rate * 2))
    with WebhookServer(config, SECRET, router, store_dir=root) as server:
        if not args.no_feed:
            threading.Thread(target=feed, daemon=True).start()
        # The load comes from a second process, as it would from a charting tool, so the
        # client's own scheduling does not share the server's interpreter.
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            pool.submit(_client, server.url, 5, 1, "warm").result()  # warm-up
            lat = pool.submit(_client, server.url, args.rate, args.seconds, "run").result()
        stop.set()
    ms = np.array(lat) * 1000
    print(f"{len(ms)} alerts at {args.rate:g}/s: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
          f"max {ms.max():.1f} ms; orders placed {len(broker.fills()) + len(broker.fetch_open_orders())}")
    agent.close()


if __name__ == "__main__":
    main()
