"""Which tenant (an agency's gallery) a call acts for.

One function decides it for every service, so that the indexer's storage (one Milvus
partition key per tenant) and the security layer (a caller bound to a tenant by its
certificate or token) meet in one place:

- the authentication interceptor, when security is on, sets `AUTHENTICATED_TENANT`
  for the duration of a call;
- services call `resolve_tenant(request.tenant)` and use what it returns.
"""

from __future__ import annotations

import contextvars
import re

from .errors import InvalidArgument, PermissionDenied

#: The tenant of requests that name none, where the deployment allows that (local use).
DEFAULT_TENANT = "default"

#: Letters, digits, '-', '_' and '.': safe as a partition key value and in logs.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

#: The tenant the authenticated caller is bound to, or None when the call is not
#: authenticated with a tenant (security off, or a role not bound to one).
AUTHENTICATED_TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kinship_authenticated_tenant", default=None
)


def resolve_tenant(requested: str, *, field: str = "tenant", default: str | None = DEFAULT_TENANT) -> str:
    """The tenant a request acts for.

    A caller bound to a tenant acts for that tenant only: naming another is refused
    (PERMISSION_DENIED), naming none means its own. Otherwise the request's tenant,
    or `default` when it names none (None: the request must name one).
    """
    requested = (requested or "").strip()
    if requested and not TENANT_PATTERN.match(requested):
        raise InvalidArgument(
            f"{field} {requested!r} is not a valid tenant id: use 1-63 letters, digits, '.', '_' or '-'",
            field=field,
        )
    bound = AUTHENTICATED_TENANT.get()
    if bound is not None:
        if requested and requested != bound:
            raise PermissionDenied(
                f"this caller acts for tenant {bound!r} and may not read or change tenant {requested!r}",
                reason="TENANT_MISMATCH",
            )
        return bound
    if requested:
        return requested
    if default is None:
        raise InvalidArgument(
            f"{field} is required: name the tenant (the agency's gallery) this call acts for", field=field
        )
    return default
