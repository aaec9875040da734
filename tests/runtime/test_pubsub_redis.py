"""pubsub.redis under faults: no acknowledged publish is lost when the subscriber's sidecar
is SIGKILLed (twice) and Redis is restarted (once, with persistence), mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.redis_server import RedisServer
from tests.support import Processes, Sidecar, component_yaml, deliveries, resource_folder

EVENTS = 2000
RATE = 200
"""Events per second offered: 2,000 take about 10 s, long enough for three faults."""


def chaos_resources(tmp_path: Path, server: RedisServer) -> Path:
    yaml = component_yaml(
        "pubsub", "pubsub.redis", redisHost=server.address, processingTimeout="2s", redeliverInterval="0.5s",
        concurrency="20",
    )  # fmt: skip
    return resource_folder(tmp_path, {"pubsub.yaml": yaml})


def test_no_acknowledged_event_is_lost_through_sidecar_kills_and_a_redis_restart(
    procs: Processes, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", durable=True).start()
    try:
        resources = ["--resources-path", str(chaos_resources(tmp_path, server))]
        subscriptions = [{"pubsubname": "pubsub", "topic": "chaos", "route": "/chaos"}]
        # A handler that takes 50 ms keeps about ten events in flight when the sidecar dies.
        _, app_port = procs.subscriber_app(subscriptions, {"/chaos": "slow:0.05"})
        subscriber = procs.sidecar("consumer", app_port=app_port, extra_args=resources)
        publisher = procs.sidecar("producer", extra_args=resources)
        acknowledged: list[int] = []
        refused: list[tuple[int, int]] = []
        faults: list[str] = []

        async def publish_all() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                start = time.monotonic()

                async def one(n: int) -> None:
                    await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
                    try:
                        reply = await client.post(publisher.url("/v1.0/publish/pubsub/chaos"), json={"n": n})
                    except httpx.HTTPError:
                        refused.append((n, 0))
                        return
                    (
                        acknowledged.append(n)
                        if reply.status_code == 204
                        else refused.append((n, reply.status_code))
                    )

                await asyncio.gather(*(one(n) for n in range(EVENTS)))

        def kill_subscriber_sidecar() -> Sidecar:
            nonlocal subscriber
            subscriber.proc.kill()
            subscriber.proc.wait()
            faults.append(f"SIGKILL subscriber sidecar after {len(acknowledged)} publishes")
            time.sleep(0.5)
            subscriber = procs.sidecar("consumer", app_port=app_port, extra_args=resources)
            return subscriber

        def restart_redis() -> None:
            server.kill()
            faults.append(f"SIGKILL redis after {len(acknowledged)} publishes")
            time.sleep(0.5)
            server.start()

        async def chaos() -> None:
            for at, fault in (
                (0.2, kill_subscriber_sidecar),
                (0.45, restart_redis),
                (0.7, kill_subscriber_sidecar),
            ):
                while len(acknowledged) + len(refused) < EVENTS * at:  # noqa: ASYNC110 - a count, polled
                    await asyncio.sleep(0.02)
                await asyncio.to_thread(fault)

        async def main() -> None:
            await asyncio.gather(publish_all(), chaos())

        asyncio.run(main())
        assert len(faults) == 3, faults
        assert refused, "publishes while Redis was down are refused, not acknowledged"
        assert all(status in (0, 500) for _, status in refused), refused[:5]

        def delivered() -> Counter[int]:
            return Counter(r["event"]["data"]["n"] for r in deliveries(app_port))

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            counts = delivered()
            if all(n in counts for n in acknowledged):
                break
            time.sleep(0.5)
        counts = delivered()
        lost = sorted(n for n in acknowledged if n not in counts)
        duplicates = sum(c - 1 for c in counts.values())
        print(
            f"\nchaos: {len(acknowledged)} of {EVENTS} publishes acknowledged, {len(refused)} refused; "
            f"faults: {'; '.join(faults)}; delivered {len(counts)} distinct events, "
            f"{duplicates} duplicate deliveries, {len(lost)} lost"
        )
        assert len(acknowledged) > EVENTS // 2
        assert lost == [], f"{len(lost)} acknowledged events never delivered: {lost[:10]}"
        assert subscriber.proc.poll() is None and publisher.proc.poll() is None
    finally:
        server.stop()
