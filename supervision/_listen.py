"""Where the HTTP endpoint listens and who may act on it: the ``http:`` field and ``--http``.

Kept apart from the server (``_httpapi``) so that loading a manifest, or
``validate``, imports no HTTP or metrics code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from actors import SpecError

__all__ = ["DEFAULT_HOST", "READS", "HttpSpec", "is_loopback", "parse_listen"]

DEFAULT_HOST: Final = "127.0.0.1"
# Who may read (status, history, metrics, events) without the token: ``loopback``, anyone
# who reaches a loopback address (every local user); ``token``: nobody.
READS: Final = ("loopback", "token")
_LISTEN: Final = re.compile(
    r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})|(?P<bare>\d{1,5})"
)
_LISTEN_HELP: Final = "HOST:PORT such as 127.0.0.1:8080, [::1]:8080 or :0 (port 0: any free port)"


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``, ``:PORT``, ``[V6]:PORT`` or ``PORT`` (loopback)."""
    match = _LISTEN.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise SpecError(field="listen", expected=_LISTEN_HELP, got=text)
    port = int(match["port"] or match["bare"])
    if port > 65535:
        raise SpecError(field="listen", expected="a port from 0 to 65535", got=text)
    host = match["v6"] or match["host"] or DEFAULT_HOST
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can reach it."""
    if host == "localhost":
        return True
    import ipaddress  # noqa: PLC0415 - only a manifest with http: pays for it (validate's speed)

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """The endpoint's address and its bearer token (actions always need it; reads off loopback
    too, and on loopback with ``reads="token"``: every local user reaches loopback).

    A host other than loopback without a token is refused: anyone who can
    reach the port could read the tree or, worse, act on it; so is
    ``reads="token"`` without one.
    """

    host: str = DEFAULT_HOST
    port: int = 0
    token: str | None = field(default=None, repr=False)
    heartbeat: float = 15.0  # seconds between SSE comments, so proxies keep the stream open
    reads: str = "loopback"  # one of READS

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or "\0" in self.host:
            raise SpecError(field="listen", expected="a host name or address", got=self.host)
        if type(self.port) is not int or not 0 <= self.port <= 65535:
            raise SpecError(field="listen", expected="a port from 0 to 65535", got=self.port)
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            raise SpecError(
                field="token", expected="a non-empty string (usually {secret: ...})", about="blank"
            )
        if not isinstance(self.heartbeat, int | float) or not 0.05 <= self.heartbeat <= 3600:
            raise SpecError(
                field="heartbeat", expected="a duration from 50ms to 1h", got=self.heartbeat
            )
        if self.reads not in READS:
            raise SpecError(field="reads", expected="one of " + ", ".join(READS), got=self.reads)
        if self.token is None and self.reads == "token":
            raise SpecError(
                field="reads",
                expected="a token beside reads: token (reads then need it)",
                got=self.reads,
            )
        if self.token is None and not self.loopback:
            raise SpecError(
                field="listen",
                expected=f"a loopback address ({DEFAULT_HOST}), or a token beside it",
                got=self.listen,
            )

    @classmethod
    def of(
        cls,
        listen: str = f"{DEFAULT_HOST}:0",
        token: str | None = None,
        heartbeat: float = 15.0,
        reads: str = "loopback",
    ) -> HttpSpec:
        """The spec for ``listen`` (``HOST:PORT``) and the rest, as the manifest writes them."""
        host, port = parse_listen(listen)
        return cls(host, port, token, heartbeat, reads)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def reads_need_token(self) -> bool:
        return self.reads == "token" or not self.loopback

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
