"""resolve_tenant: the one place a call's tenant is decided."""

import pytest

from kinship.runtime import tenancy
from kinship.runtime.errors import InvalidArgument, PermissionDenied


def test_unbound_caller_gets_requested_or_default():
    assert tenancy.resolve_tenant("agency-a") == "agency-a"
    assert tenancy.resolve_tenant("") == tenancy.DEFAULT_TENANT
    with pytest.raises(InvalidArgument, match="tenant is required"):
        tenancy.resolve_tenant("", default=None)


def test_bound_caller_acts_for_its_own_tenant_only():
    token = tenancy.AUTHENTICATED_TENANT.set("agency-a")
    try:
        assert tenancy.resolve_tenant("") == "agency-a"
        assert tenancy.resolve_tenant("agency-a") == "agency-a"
        with pytest.raises(PermissionDenied, match="agency-b"):
            tenancy.resolve_tenant("agency-b")
    finally:
        tenancy.AUTHENTICATED_TENANT.reset(token)


@pytest.mark.parametrize("bad", ["a b", "-x", "x" * 64, "a/b", "é"])
def test_malformed_tenant_ids_are_refused(bad):
    with pytest.raises(InvalidArgument, match="not a valid tenant id"):
        tenancy.resolve_tenant(bad)
