"""Where the suite's three services listen by default, and how a client finds them.

One table for the CLI, the SDK (kinship.client) and `kinship serve all`: a client takes
an address given to it, else KINSHIP_<SERVICE>_ADDRESS, else 127.0.0.1 on the default port.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Default port of each service.
DEFAULT_PORTS: dict[str, int] = {"embedder": 50051, "indexer": 50052, "ranker": 50053}
SERVICES = tuple(DEFAULT_PORTS)


def address_env(service: str) -> str:
    """The environment variable that names a service's address, e.g. KINSHIP_EMBEDDER_ADDRESS."""
    return f"KINSHIP_{service.upper()}_ADDRESS"


def service_address(service: str, given: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """`given`, else KINSHIP_<SERVICE>_ADDRESS, else 127.0.0.1:<default port>."""
    if service not in DEFAULT_PORTS:
        raise ValueError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    env = os.environ if env is None else env
    return given or env.get(address_env(service)) or f"127.0.0.1:{DEFAULT_PORTS[service]}"
