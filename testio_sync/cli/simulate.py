"""``testio-sync simulate``: the simulated TestIO API, from the main command."""

from __future__ import annotations

from typing import Annotated

import typer

SIMULATE_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def simulate(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8765,
    scale: Annotated[str, typer.Option(help="Data size: tiny, seed or large.")] = "seed",
    seed: Annotated[int, typer.Option(help="Random seed of the generated data.")] = 1,
    token: Annotated[str, typer.Option(help="The API token it accepts.")] = "demo-token",
    latency_ms: Annotated[float, typer.Option(help="Delay added to every answer.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of answers that are 502/503/504.")] = 0.0,
    rate_limit: Annotated[float, typer.Option(help="Requests per second before 429s.")] = 0.0,
    broken_tests: Annotated[
        str | None, typer.Option(metavar="N|ID,ID", help="Tests whose pages answer 500.")
    ] = None,
    token_revoked: Annotated[
        bool, typer.Option("--token-revoked", help="Answer 401 to every request.")
    ] = False,
) -> None:
    """Serve a seeded, simulated TestIO Customer API to sync against.

    Prints `Simulator listening on <base url>` once it accepts connections.
    Other fault flags of `python -m testio_sync.simulator --help` pass through.

    Example:
        $ testio-sync simulate --port 8765 --scale seed --token demo-token
    """
    from testio_sync.simulator.cli import main as simulator_main

    argv = [
        f"--host={host}",
        f"--port={port}",
        f"--scale={scale}",
        f"--seed={seed}",
        f"--token={token}",
        f"--latency-ms={latency_ms}",
        f"--error-rate={error_rate}",
        f"--rate-limit={rate_limit}",
    ]
    if broken_tests is not None:
        argv.append(f"--broken-tests={broken_tests}")
    if token_revoked:
        argv.append("--token-revoked")
    raise typer.Exit(simulator_main([*argv, *ctx.args]))
