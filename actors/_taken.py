"""Whether something answers already where a service's readiness probe looks, before it starts.

Apart from ``actors._ready`` (which loads ``requests``): a job actor asks this at every
start, and ``validate`` loads the job actor's module without any runtime machinery.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

from actors._checks import need
from actors._errors import SpecError

__all__ = ["loopback_address", "split_host_port", "taken_before"]

_TAKEN_WAIT: Final = 0.2  # seconds a look at a loopback address before a start may take


def loopback_address(probe: object) -> tuple[str, int] | None:
    """(host, port) where a tcp or http ``probe`` (a ``ReadyProbe``) looks, when that is this
    machine's loopback (``localhost``, 127.0.0.0/8, ``::1``); None for any other address or
    probe (a command probe, an embedder's own)."""
    tcp, http = getattr(probe, "tcp", None), getattr(probe, "http", None)
    if isinstance(tcp, str):
        try:
            host, port = split_host_port(tcp)
        except SpecError:  # a ReadyProbe's was checked when made; an embedder's may be anything
            return None
    elif isinstance(http, str):
        parts = urlsplit(http)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        host = parts.hostname or ""
    else:
        return None
    if host.lower() == "localhost":
        return host, port
    try:
        return (host, port) if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:80`` too) as (host, port); ``SpecError`` for anything else."""
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    host = host.removeprefix("[").removesuffix("]").strip()  # "[::1]:80"
    ok = bool(sep and host and port.isdigit() and port.isascii() and 0 < int(port[:6]) < 65536)
    need(ok, "ready.tcp", "host:port like localhost:5432", value)
    return host, int(port)


def taken_before(probe: object) -> str | None:
    """``host:port`` if something on this machine answers where ``probe`` looks already, before
    its service starts: another process holds the address, and the probe would pass without
    the service (a copy of it left running, or anything else). None otherwise, or when the
    probe looks elsewhere: only a loopback address, where a refusal is immediate, is tried."""
    found = loopback_address(probe)
    if found is None:
        return None
    host, port = found
    try:
        with socket.create_connection((host, port), timeout=_TAKEN_WAIT):
            pass
    except OSError:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
