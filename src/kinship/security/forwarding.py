"""What a service tells the services it calls about the call it is handling.

The ranker calls the embedder and indexer with its own certificate (role `service`).
So that they can apply the original caller's role, tenant and purpose, it sends them
as metadata; a receiving service believes `x-on-behalf-of*` only from a caller whose
own certificate or token has the role `service`.
"""

from __future__ import annotations

import contextvars

CASE_ID_KEY = "x-case-id"
PURPOSE_KEY = "x-purpose"
ON_BEHALF_OF_KEY = "x-on-behalf-of"
ON_BEHALF_OF_ROLE_KEY = "x-on-behalf-of-role"
ON_BEHALF_OF_TENANT_KEY = "x-on-behalf-of-tenant"
DELEGATION_KEYS = (ON_BEHALF_OF_KEY, ON_BEHALF_OF_ROLE_KEY, ON_BEHALF_OF_TENANT_KEY)

#: Metadata to send on every call made while handling the current one.
FORWARDED: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "kinship_forwarded_metadata", default=()
)


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    return FORWARDED.get()
