"""CPU per call-duration measurement: the OpenTelemetry SDK's histogram vs outrig's
pre-aggregated one, same process, same attributes, interleaved rounds.

    python benchmarks/metrics_record.py [--records 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from outrig.middleware.metrics import DURATION, DURATION_DESCRIPTION, DURATION_KEYS, _sdk_histogram
from outrig.telemetry.metrics import LATENCY_BUCKETS, MetricsSettings, build_meter_provider
from outrig.telemetry.preaggregated import Preaggregated

KEY = ("invoke", "peer", "app-b", "/v1.0/invoke/{appId}/method/{method}", "200", "")
"""The six attributes of a peer invocation's duration, as the sidecar records them."""


def cpu_per_record(record: Callable[[float, tuple[str, ...]], None], records: int) -> float:
    started = time.process_time()
    for _ in range(records):
        record(0.0012, KEY)
    return (time.process_time() - started) / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    extra = Preaggregated()
    provider = build_meter_provider("bench", MetricsSettings(), CollectorRegistry(), extra)
    sdk = _sdk_histogram(provider.get_meter("outrig"))
    ours = extra.histogram(DURATION, "s", DURATION_DESCRIPTION, DURATION_KEYS, LATENCY_BUCKETS).record
    print(f"{'round':>5} {'SDK histogram':>15} {'pre-aggregated':>15} {'ratio':>7}   (us of CPU per record)")
    for n in range(args.rounds):
        baseline, measured = cpu_per_record(sdk, args.records), cpu_per_record(ours, args.records)
        print(f"{n:>5} {baseline:>15.2f} {measured:>15.2f} {baseline / measured:>6.1f}x")
    provider.shutdown()


if __name__ == "__main__":
    main()
