"""A synthetic app population driven through the public ingest API in accelerated time.

    from services.cli.simulator import SimulationConfig, run_simulation
    summary = await run_simulation(SimulationConfig(users=500, days=14), "127.0.0.1:50051", key)

The generation (`model`, `cities`, `population`, `behaviour`) is pure and seeded; the
`driver` sends it. See README.md, section Simulator.
"""

from services.cli.simulator.config import ConfigError, SimulationConfig, Summary
from services.cli.simulator.driver import run_simulation
from services.cli.simulator.model import Behaviour

__all__ = ["Behaviour", "ConfigError", "SimulationConfig", "Summary", "run_simulation"]
