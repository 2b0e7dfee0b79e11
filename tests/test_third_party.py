"""The private internals of third-party libraries lanchat still uses, where no public API
does the job (the shell now uses prompt-toolkit's public API only). Each library is bounded
in pyproject.toml; this test fails loudly, naming the internal, when an upgrade within the
bound moves it, so an upgrade cannot silently stop names from being defended (mDNS)."""

from __future__ import annotations

import inspect

import pytest
import zeroconf
from zeroconf._cache import DNSCache
from zeroconf._services.registry import ServiceRegistry

# (owner, attribute, where lanchat uses it, why no public API does)
INTERNALS = [
    (ServiceRegistry, "async_remove", "lanchat/discovery/mdns_names.py: withdraw a contested name",
     "withdraw a record without a goodbye (unregister_service sends one, erasing the "
     "winner's record at every peer)"),
    (ServiceRegistry, "async_get_info_name", "lanchat/discovery/mdns_names.py: _defend",
     "whether the name is still ours when the defence fires"),
    (DNSCache, "async_all_by_details", "lanchat/discovery/mdns_names.py: txt_ids",
     "read every cached TXT record of a contested name"),
]


@pytest.mark.parametrize(("owner", "name", "where", "why"), INTERNALS,
                         ids=[f"{o.__name__}.{n}" for o, n, _, _ in INTERNALS])
def test_a_private_internal_lanchat_uses_is_still_there(owner: type, name: str, where: str,
                                                        why: str) -> None:
    """Read the failure: it names the internal, the library version and where to look."""
    versions = f"zeroconf {zeroconf.__version__}"
    present = hasattr(owner, name) or name in inspect.signature(owner.__init__).parameters \
        or name in getattr(owner, "__annotations__", {}) or _set_in_init(owner, name)
    assert present, (f"{owner.__module__}.{owner.__name__}.{name} is gone ({versions}); "
                     f"lanchat uses it in {where} to {why}. Adapt that code, then move the "
                     "upper bound in pyproject.toml.")


def _set_in_init(owner: type, name: str) -> bool:
    """True if `self.<name> =` appears in the class's __init__ (instance attributes)."""
    try:
        source = inspect.getsource(owner.__init__)
    except (OSError, TypeError):
        return False
    return f"self.{name} =" in source or f"self.{name}:" in source
