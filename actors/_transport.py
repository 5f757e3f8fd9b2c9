"""The transport of http jobs and readiness probes: a ``requests`` session whose pools tell
``actors._http.bounded`` which connections a request holds, so its deadline or a cancel can
shut them down.

Apart from ``actors._http``: only a request made or a session built loads this module and
``requests`` with it (``validate`` builds ``HttpWork`` and ``ReadyProbe`` values only, and
under gevent this comes after the monkey-patching).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from actors._http import LookupTimedOut, _current, _shutdown, resolve

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from urllib3._base_connection import BaseHTTPConnection, BaseHTTPSConnection

__all__ = ["tracked_session"]


def _after_connect(conn: Any) -> None:
    # Kept for _sock_of; replaced by each connect, so it is never another request's socket.
    conn._jv_sock = conn.sock
    inflight = _current.get()
    if inflight is not None and inflight.aborted:
        _shutdown(conn.sock)


def _new_conn_within(conn: Any, new_conn: Callable[[], socket.socket]) -> socket.socket:
    """urllib3's ``_new_conn`` for ``conn``, its host name looked up within the request's time.

    urllib3 looks the name up in its connect, for as long as the system's resolver
    takes: here ``resolve`` does, bounded by the ``bounded`` block's deadline, and
    each address found is connected to as urllib3 would (an address is not looked up).
    """
    inflight = _current.get()
    host = conn._dns_host
    if inflight is None or inflight.deadline is None:
        return new_conn()
    try:
        found = resolve(
            host,
            conn.port,
            within=max(0.0, inflight.deadline - time.monotonic()),
            told=inflight.timeout,
            family=allowed_gai_family(),
            aborted=lambda: inflight.aborted,
        )
    except LookupTimedOut as exc:
        raise ConnectTimeoutError(conn, str(exc)) from exc
    except OSError as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc  # type: ignore[arg-type]
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    failed: Exception = NewConnectionError(conn, f"no address found for {host}")
    for address in addresses:
        conn._dns_host = address
        try:
            return new_conn()
        except (NewConnectionError, ConnectTimeoutError) as exc:
            failed = exc  # the next address, as socket.create_connection tries each
        finally:
            conn._dns_host = host
    raise failed


class _TrackedHTTPConnection(HTTPConnection):
    _jv_sock: Any = None  # the last connect's socket, kept after http.client lets it go

    def _new_conn(self) -> socket.socket:
        return _new_conn_within(self, super()._new_conn)

    def connect(self) -> None:
        super().connect()
        _after_connect(self)  # cancel() may have come while we were connecting


class _TrackedHTTPSConnection(HTTPSConnection):
    _jv_sock: Any = None

    def _new_conn(self) -> socket.socket:
        return _new_conn_within(self, super()._new_conn)

    def connect(self) -> None:
        super().connect()
        _after_connect(self)


class _TrackedHTTPPool(HTTPConnectionPool):
    """A pool that tells the current ``_InFlight`` which connections a request holds."""

    ConnectionCls: type[BaseHTTPConnection | BaseHTTPSConnection] = _TrackedHTTPConnection

    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        conn = super()._get_conn(timeout)
        inflight = _current.get()
        if inflight is not None:
            inflight.add(conn)
        return conn

    def _put_conn(self, conn: BaseHTTPConnection | None) -> None:
        inflight = _current.get()
        if inflight is not None and conn is not None:
            inflight.discard(conn)
        super()._put_conn(conn)


class _TrackedHTTPSPool(_TrackedHTTPPool, HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


def _close_pool(pool: HTTPConnectionPool) -> None:
    pool.close()


class _Adapter(HTTPAdapter):
    """requests' adapter, with pools whose in-flight connections ``cancel`` can abort."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackedHTTPPool,
            "https": _TrackedHTTPSPool,
        }
        # urllib3 2 only forgets the pools on clear() (the session's close): their idle
        # keep-alive connections stayed open until the garbage collector found the pool,
        # which an exception's traceback can hold for a long time. Close them for real.
        self.poolmanager.pools.dispose_func = _close_pool


class _Session(requests.Session):
    """requests' session, dropping the headers set from secrets on a redirect to another
    host: requests drops only Authorization, and an X-Api-Key went to wherever it pointed."""

    def __init__(self, strip: frozenset[str]) -> None:
        super().__init__()
        self._strip = strip

    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        # requests' stubs leave these two unannotated.
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        old, new = response.request.url, prepared_request.url
        if self._strip and self.should_strip_auth(old, new):  # type: ignore[no-untyped-call]
            headers = prepared_request.headers
            for name in [n for n in headers if n.lower() in self._strip]:
                del headers[name]


def tracked_session(strip: frozenset[str] = frozenset()) -> requests.Session:
    """A session whose requests ``bounded`` can end; ``strip``: the lower-cased names of the
    headers that a redirect to another host drops. The caller closes it."""
    session = _Session(strip)
    adapter = _Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
