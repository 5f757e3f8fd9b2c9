"""Where a child's work runs: ``"local"`` (jobvisor's process) or on Ray (``RayPlacement``).

A spec module: it never imports Ray. ``placement_of`` turns what a spec or a
manifest says (``"local"``, ``"ray"``, ``{"ray": {...}}``) into ``"local"``
or a ``RayPlacement``; ``actors._ray`` does the placing.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from actors._checks import is_number, key_field, need, need_key
from actors._errors import SpecError

__all__ = ["RAY_EXTRA", "RayPlacement", "check_placeable", "placement_of", "ray_installed"]

RAY_EXTRA: Final = "pip install 'jobvisor[ray]'"
RAY_FIELDS: Final = ("num_cpus", "num_gpus", "memory", "resources", "node")
_NODE_ID: Final = re.compile(r"[0-9a-fA-F]{56}")  # Ray's NodeID: 28 bytes (Ray 2.x)
_EXPECTED: Final = "local, ray, or {ray: {num_cpus, num_gpus, memory, resources, node}}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RayPlacement:
    """Run the child's work in a Ray actor: its resources, and optionally the node it must use.

    ``memory`` is in bytes; ``resources`` are custom Ray resources
    (``{NAME: amount}``); ``node`` pins the actor to a Ray node id (hex) or a
    node's IP address. None leaves Ray's default.
    """

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    node: str | None = None

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            ok = value is None or (is_number(value) and value >= 0)
            need(ok, f"placement.ray.{name}", "a number >= 0", value)
        memory = self.memory
        ok = memory is None or (is_number(memory) and memory > 0 and int(memory) == memory)
        need(ok, "placement.ray.memory", "a size in bytes > 0", memory)
        if memory is not None:
            object.__setattr__(self, "memory", int(memory))
        need(
            isinstance(self.resources, Mapping),
            "placement.ray.resources",
            "a mapping of resource names to amounts",
            self.resources,
        )
        for key, amount in self.resources.items():
            where = key_field("placement.ray.resources", key)
            need_key(isinstance(key, str) and bool(key), where, "a resource name", key)
            need(is_number(amount) and amount > 0, where, "an amount > 0", amount)
        object.__setattr__(self, "resources", dict(self.resources))
        node = self.node
        ok = node is None or (isinstance(node, str) and (_is_node_id(node) or _is_ip(node)))
        need(ok, "placement.ray.node", "a Ray node id (56 hex digits) or a node's IP address", node)

    def describe(self) -> str:
        """``ray``, or ``ray {num_cpus: 2, node: ...}`` with what is set."""
        parts = []
        for name in RAY_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Mapping) and value:
                value = "{" + ", ".join(f"{k}: {v:g}" for k, v in value.items()) + "}"
            elif isinstance(value, float):
                value = f"{value:g}"
            if value not in (None, {}):
                parts.append(f"{name}: {value}")
        return "ray {" + ", ".join(parts) + "}" if parts else "ray"


def _is_node_id(node: str) -> bool:
    """Whether ``node`` has the form of a Ray node id: 28 bytes in hex, not Ray's nil id."""
    return _NODE_ID.fullmatch(node) is not None and node.lower() != "f" * 56


def _is_ip(node: str) -> bool:
    try:
        ipaddress.ip_address(node)
    except ValueError:
        return False
    return True


def placement_of(value: object) -> str | RayPlacement:
    """``"local"`` or a ``RayPlacement`` from what a spec says; ``SpecError`` for anything else."""
    if value == "local" or isinstance(value, RayPlacement):
        return value
    if value == "ray":
        return RayPlacement()
    if isinstance(value, Mapping) and list(value) == ["ray"]:
        settings: Any = value["ray"]
        if settings is None:
            return RayPlacement()
        if isinstance(settings, Mapping):
            for key in settings:
                ok = key in RAY_FIELDS
                need_key(
                    ok, key_field("placement.ray", key), "one of " + ", ".join(RAY_FIELDS), key
                )
            return RayPlacement(**settings)
        raise SpecError(field="placement.ray", expected="a mapping of Ray settings", got=settings)
    raise SpecError(field="placement", expected=_EXPECTED, got=value)


def ray_installed() -> bool:
    """Whether the ``ray`` extra is importable, without importing it."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def check_placeable(who: str, runtime: str) -> None:
    """Refuse Ray placement where it cannot run: under gevent, or without Ray installed."""
    if runtime == "gevent":
        raise SpecError(
            f"{who}: placement ray cannot run with runtime gevent (Ray and gevent don't mix); "
            "use runtime threads",
            field="placement",
            expected="placement local with runtime gevent (Ray and gevent don't mix)",
            got="ray",
        )
    if not ray_installed():
        raise SpecError(
            f"{who}: placement ray needs Ray, which is not installed; "
            f"install the 'ray' extra: {RAY_EXTRA}",
            field="placement",
            expected="placement local unless Ray is installed",
            got="ray",
        )
