"""The Ray actor class jobvisor creates: it needs nothing importable on the worker to start.

Pickled *by value* (``register_pickle_by_value``): a worker rebuilds this
class from its bytes, puts jobvisor's import path on ``sys.path`` in
``__init__``, and only then imports ``actors._ray`` for the real work. So a
placed actor needs no ``runtime_env`` (which would cost a fresh worker
process and a runtime-env set-up per actor), only the same Python packages
on the node. Imports stay inside the methods: module globals would be
pickled by reference, before ``sys.path`` is set.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Boot"]


class Boot:
    """A placed job's runner (``target`` None) or a user's actor (``target``: its pickled class)."""

    def __init__(self, paths: list[str], target: bytes | None, args: tuple[Any, ...]) -> None:
        import sys  # noqa: PLC0415

        sys.path[:0] = [p for p in paths if p not in sys.path]
        from actors import _ray  # noqa: PLC0415

        self.inner: Any = _ray.Runner() if target is None else _ray.RemoteActor(target, args)

    def where(self) -> tuple[Any, ...]:  # a RemoteActor's ends with its failure, if any
        return self.inner.where()  # type: ignore[no-any-return]

    def run(
        self, work: Any, path: str, number: int, started_at: float, logged: bool | None = None
    ) -> Any:
        return self.inner.run(work, path, number, started_at, logged)

    def drain(self, wait: float) -> list[tuple[Any, ...]]:
        return self.inner.drain(wait)  # type: ignore[no-any-return]

    def cancel(self, number: int, *, kill: bool) -> None:
        self.inner.cancel(number, kill=kill)

    def receive(self, message: Any) -> Any:
        return self.inner.receive(message)

    def watch(self) -> None:
        self.inner.watch()
