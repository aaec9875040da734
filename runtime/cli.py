"""The `outrig` command: `run` a sidecar (Dapr CLI flags), show `traces`, run the `demo`,
manage the mTLS certificate authority (`ca`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .options import APP_ID_PATTERN, SidecarOptions, outrig_home


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def _app_id(text: str) -> str:
    if not APP_ID_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid app id: use letters, digits, '.', '_' or '-' (at most 63, no '..')"
        )
    return text


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="outrig", description="A Dapr-compatible sidecar runtime.")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a sidecar, and an app after `--`",
        usage="outrig run --app-id ID [options] [-- app command ...]",
    )
    run.add_argument("--app-id", "-a", type=_app_id, required=True)
    run.add_argument("--app-port", "-p", type=_port)
    run.add_argument("--app-protocol", "-P", choices=["http", "grpc"], default="http")
    run.add_argument("--app-channel-address", default="127.0.0.1", help="host the app listens on")
    run.add_argument("--dapr-http-port", "-H", type=_port, default=3500)
    run.add_argument("--dapr-grpc-port", "-G", type=_port, default=None)
    run.add_argument(
        "--internal-port", type=_port, default=0, help="sidecar-to-sidecar port (default: any free port)"
    )
    run.add_argument(
        "--metrics-port",
        "-M",
        type=_port,
        help="Prometheus metrics port (default 9090, or a free port when 9090 is taken)",
    )
    run.add_argument(
        "--dapr-listen-addresses",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address the API, peer and metrics ports listen on (default 127.0.0.1; 0.0.0.0 in containers)",
    )
    run.add_argument("--resources-path", "-d", type=Path, action="append", default=[])
    run.add_argument("--config", "-c", type=Path)
    run.add_argument(
        "--dapr-http-max-request-size",
        type=int,
        default=4,
        metavar="MB",
        help="largest publish/state request body in MB (default 4; invocations stream)",
    )
    run.add_argument("--log-as-json", action="store_true", help="log JSON lines (with trace_id and span_id)")
    run.add_argument("--log-level", choices=["debug", "info", "warn", "error", "fatal"], default="info")
    run.add_argument(
        "--ca-dir",
        type=Path,
        help="CA folder to issue this sidecar's mTLS certificate from (default: $OUTRIG_CA_DIR, else "
        "$OUTRIG_HOME/ca, created when missing); used when the Configuration has spec.mtls.enabled",
    )

    traces = sub.add_parser("traces", help="print recent traces from the local trace store")
    traces.add_argument("--limit", "-n", type=int, default=3, help="how many traces (default 3)")
    traces.add_argument("--trace", "-t", help="one trace by id (a prefix is enough)")
    traces.add_argument("--app-id", "-a", help="only traces with spans from this app id")

    from .security.caparser import add_parser as add_ca_parser

    add_ca_parser(sub)

    demo = sub.add_parser("demo", help="run three services calling each other, show the trace")
    demo.add_argument("--requests", type=int, default=3, help="requests to send (default 3)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, command = args_list[:cut], args_list[cut + 1 :]
    args = parser().parse_args(args_list)
    if args.command == "run":
        return _run(args, command)
    if args.command == "traces":
        from .tracecmd import print_traces

        try:
            return print_traces(outrig_home(), args.limit, args.trace, args.app_id)
        except BrokenPipeError:  # `outrig traces | head`
            sys.stderr.close()
            return 0
    if args.command == "ca":
        from .security.cacmd import run as run_ca

        return run_ca(args)
    from .demo import run_demo

    return run_demo(args.requests)


def _run(args: argparse.Namespace, command: list[str]) -> int:
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(args.log_level, args.log_level.upper())
    from outrig.telemetry.logs import configure

    configure(args.app_id, level, args.log_as_json)
    options = SidecarOptions(
        app_id=args.app_id,
        app_port=args.app_port,
        app_protocol=args.app_protocol,
        app_host=args.app_channel_address,
        http_port=args.dapr_http_port,
        grpc_port=50001 if args.dapr_grpc_port is None else args.dapr_grpc_port,
        grpc_port_given=args.dapr_grpc_port is not None,
        internal_port=args.internal_port,
        metrics_port=9090 if args.metrics_port is None else args.metrics_port,
        metrics_port_given=args.metrics_port is not None,
        listen_address=args.dapr_listen_addresses,
        resources_paths=tuple(args.resources_path),
        config_path=args.config,
        log_level=args.log_level,
        max_request_mb=args.dapr_http_max_request_size,
        ca_dir=args.ca_dir,
    )
    from .resources import ResourceError, load
    from .servers import StartupError

    try:
        resources = load(options.resources_paths, options.config_path, options.app_id)
        import uvloop

        from .launcher import run

        return uvloop.run(run(options, resources, command))
    except (ResourceError, StartupError) as exc:
        print(f"outrig: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
