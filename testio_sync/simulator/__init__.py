"""A seeded, deterministic TestIO Customer API simulator (contract: ``testio-api.md``).

It shares no code with the project's API client, so a misreading of the
contract on one side cannot be hidden by the same misreading on the other.

    sim = Simulator(scale="tiny", seed=1, token="test-token")
    with sim.serve() as server:
        ...  # server.base_url == "http://127.0.0.1:PORT/customer/v2"
"""

from testio_sync.simulator.cli import main
from testio_sync.simulator.dataset import SCALES, ScaleSpec
from testio_sync.simulator.faults import FaultConfig
from testio_sync.simulator.runner import run_simulator
from testio_sync.simulator.server import SimulatorServer
from testio_sync.simulator.simulator import Simulator

__all__ = [
    "SCALES",
    "FaultConfig",
    "ScaleSpec",
    "Simulator",
    "SimulatorServer",
    "main",
    "run_simulator",
]
