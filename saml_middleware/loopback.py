"""Whether a host is this machine, decided without a DNS lookup.

The CLI warns about plain http elsewhere than on this machine, and the
development IdP fetches SP metadata only from it.
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not), `localhost` and names under `.localhost`."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
