"""Serving: several servers per process, clean stops, the module entry point and its signals."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

import testio_sync.simulator as simulator_package
from testio_sync.simulator import FaultConfig, Simulator, main, run_simulator

PACKAGE_DIR = Path(simulator_package.__file__).parent
ROOT = PACKAGE_DIR.parents[1]


def test_the_public_api_is_what_other_modules_import():
    assert simulator_package.__all__ == [
        "SCALES",
        "FaultConfig",
        "ScaleSpec",
        "Simulator",
        "SimulatorServer",
        "main",
        "run_simulator",
    ]


def test_the_simulator_imports_nothing_else_from_the_project():
    """It implements the contract on its own, so client and simulator bugs cannot cancel out."""
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("testio_sync"):
                    assert name.startswith("testio_sync.simulator"), f"{path.name}: {name}"


def test_several_servers_run_side_by_side(start_time):
    sim_a, sim_b = Simulator(seed=1, now=start_time), Simulator(seed=2, now=start_time)
    with sim_a.serve() as a, sim_b.serve() as b, sim_a.serve() as a_again:
        assert len({a.port, b.port, a_again.port}) == 3
        assert a.base_url == f"http://127.0.0.1:{a.port}/customer/v2"
        assert a.root_url == f"http://127.0.0.1:{a.port}"
        headers = {"Authorization": "Token test-token"}
        first = httpx.get(f"{a.base_url}/products", headers=headers).json()
        assert httpx.get(f"{a_again.base_url}/products", headers=headers).json() == first
        assert httpx.get(f"{b.base_url}/products", headers=headers).json() != first


def test_a_stopped_server_refuses_connections_and_stops_twice_safely(start_time):
    server = Simulator(now=start_time).serve()
    url = f"{server.root_url}/_simulator/health"
    assert httpx.get(url).status_code == 200
    server.stop()
    server.stop()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_a_busy_port_raises_at_serve_time(start_time):
    sim = Simulator(now=start_time)
    with sim.serve() as server, pytest.raises(OSError):
        sim.serve(port=server.port)


def test_run_simulator_announces_its_url_and_stops_on_request(start_time):
    announced: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=run_simulator,
        kwargs={
            "port": 0,
            "scale": "tiny",
            "now": start_time,
            "faults": FaultConfig(latency_ms=1),
            "announce": announced.append,
            "stop": stop,
        },
    )
    thread.start()
    try:
        for _ in range(200):
            if announced:
                break
            stop.wait(0.05)
        assert announced, "run_simulator did not announce a URL"
        response = httpx.get(
            f"{announced[0]}/products", headers={"Authorization": "Token demo-token"}
        )
        assert response.status_code == 200
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    "argv",
    [
        ["--error-rate", "2"],
        ["--scale", "huge"],
        ["--now", "2026-01-01T00:00:00"],
        ["--tests", "x"],
    ],
)
def test_main_rejects_bad_arguments_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0", *argv])
    assert exit_info.value.code == 2
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_module_prints_one_line_and_exits_cleanly_on_a_signal(signum):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable, "-m", "testio_sync.simulator", "--port", "0", "--scale", "tiny",
        "--token", "cli-token", "--broken-tests", "1", "--now", "2026-01-15T12:00:00Z",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Simulator listening on http://127.0.0.1:")
        base_url = line.split(" on ", 1)[1].strip()
        assert base_url.endswith("/customer/v2")
        response = httpx.get(f"{base_url}/products", headers={"Authorization": "Token cli-token"})
        assert response.status_code == 200
        faults = httpx.get(base_url.replace("/customer/v2", "/_simulator/faults")).json()
        assert len(faults["resolved_broken_test_ids"]) == 1
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == ""
