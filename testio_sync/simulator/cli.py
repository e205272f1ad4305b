"""``python -m testio_sync.simulator``: argparse front end of ``run_simulator``.

Prints exactly one line to stdout (``Simulator listening on <base url>``) once
the port accepts connections; logs go to stderr. Exit status 0 after SIGINT or
SIGTERM, 1 when the address cannot be bound, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime

from testio_sync.simulator.dataset import SCALES
from testio_sync.simulator.faults import FaultConfig
from testio_sync.simulator.runner import run_simulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m testio_sync.simulator",
        description="Serve a seeded, deterministic TestIO Customer API on 127.0.0.1.",
        epilog="example: python -m testio_sync.simulator --port 0 --scale seed --token demo-token",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--scale", choices=sorted(SCALES), default="seed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--token", default="demo-token")
    parser.add_argument("--now", type=_aware_datetime, help="ISO 8601 start of the clock")
    parser.add_argument("--log-level", default="INFO", help="stderr log level")
    counts = parser.add_argument_group("count overrides")
    for name in ("products", "tests", "bugs", "features"):
        counts.add_argument(f"--{name}", type=int)
    faults = parser.add_argument_group("faults (all off by default)")
    faults.add_argument("--latency-ms", type=float, default=0.0)
    faults.add_argument("--latency-jitter-ms", type=float, default=0.0)
    faults.add_argument("--rate-limit", type=float, default=0.0, metavar="RPS")
    faults.add_argument("--retry-after-http-date", action="store_true")
    faults.add_argument("--error-rate", type=float, default=0.0, help="share answered 502/503/504")
    faults.add_argument(
        "--broken-tests",
        type=_count_or_ids,
        default=(0, ()),
        metavar="N|ID,ID",
        help="N archived tests picked by seed, or a comma list of test ids, answer 500",
    )
    faults.add_argument("--bug-batch-limit", type=int, default=0, metavar="N")
    faults.add_argument("--hang-rate", type=float, default=0.0)
    faults.add_argument("--hang-seconds", type=float, default=30.0)
    faults.add_argument("--malformed-rate", type=float, default=0.0)
    faults.add_argument("--token-revoked", action="store_true")
    return parser


def faults_from_args(args: argparse.Namespace) -> FaultConfig:
    """The start-up ``FaultConfig`` the flags describe.

    Raises:
        ValueError: a rate outside [0, 1] or a negative value.
    """
    broken_count, broken_ids = args.broken_tests
    return FaultConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        rate_limit_rps=args.rate_limit,
        retry_after_http_date=args.retry_after_http_date,
        error_rate=args.error_rate,
        broken_test_ids=broken_ids,
        broken_tests=broken_count,
        bug_batch_limit=args.bug_batch_limit,
        hang_rate=args.hang_rate,
        hang_seconds=args.hang_seconds,
        malformed_rate=args.malformed_rate,
        token_revoked=args.token_revoked,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        faults = faults_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        run_simulator(
            host=args.host,
            port=args.port,
            scale=args.scale,
            seed=args.seed,
            token=args.token,
            now=args.now,
            products=args.products,
            tests=args.tests,
            bugs=args.bugs,
            features=args.features,
            faults=faults,
        )
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"Error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _aware_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("--now needs an offset, e.g. 2026-01-31T00:00:00+00:00")
    return value


def _count_or_ids(text: str) -> tuple[int, tuple[int, ...]]:
    """``"3"`` is a count; ``"101,202"`` (or ``"101,"``) lists test ids."""
    try:
        if "," not in text:
            return int(text), ()
        return 0, tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected N or a comma list of test ids") from None
