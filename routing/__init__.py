"""Traffic logic: route matching, endpoint sets, balancers, health, resilience and discovery.

Nothing here handles HTTP itself; it imports only `gateway.core` of the gateway package.
"""

import gateway.core.native  # noqa: F401 - sets up how the compiled data-path modules load
