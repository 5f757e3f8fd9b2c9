"""The manifest's fields and the type of each: the shape ``jobvisor schema`` prints.

The loader (``_manifest``, ``_work``, ``_notify``, ``_defaults``) owns the
field names: each mapping it reads is checked against a key tuple of its
own. Here each of those tuples gets the type of each of its keys, and
``fields_of`` refuses, at import, a tuple whose keys and types differ, so a
field added to the loader cannot be missing from the schema, nor a field
dropped from it linger there. Choices come from the same enums and tuples
the specs check against; durations and sizes from the patterns
``_units`` parses with.

Every string the loader reads may be written as ``${NAME}`` (resolved from
the environment before any field is read) or as a ``{secret: ...}``
mapping, so every typed leaf also admits those: the schema is a superset of
what the loader accepts for types, and refuses what it refuses for them
(a list where a duration goes, a number where a name goes). Counts carry
the specs' bounds (``Count``: exit codes and statuses from ``actors._checks``,
``MAX_REPLICAS``; the minimums checked against the loader by a test), and so
do growth factors and jitters (``Number``, from ``actors._exponential``); what
needs more than one value (a ``depends_on``) stays the loader's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from actors._checks import EXIT_CODES, HTTP_STATUSES, MAX_DURATION, fmt_duration
from actors._exponential import JITTERS, MULTIPLIERS
from actors._placement import RAY_FIELDS
from actors._python import ISOLATIONS
from supervision._defaults import JOB_KEYS, OWN_ONLY
from supervision._listen import READS
from supervision._manifest import (
    BREAKER_KEYS,
    CLUSTER_KEYS,
    COOLDOWN_KEYS,
    GROUP_KEYS,
    GROWTH_KEYS,
    LISTEN_KEYS,
    LOGGING_KEYS,
    MAX_REPLICAS,
    OUTPUT_KEYS,
    PLACEMENT_KEYS,
    READY_KEYS,
    RETRY_KEYS,
    ROOT_KEYS,
    ROTATE_KEYS,
    STOP_KEYS,
    TOP_KEYS,
    WINDOW_KEYS,
)
from supervision._notify import NOTIFY_HTTP_KEYS, NOTIFY_KEYS, NotifyEvent
from supervision._policy import OnExhausted, RestartType, Strategy
from supervision._spec import LEVELS, LOG_FORMATS, NAME, PLACEMENTS, ROTATE_WHEN
from supervision._units import DURATION_UNITS, EXPONENT, NUMBER, SIZE_UNITS
from supervision._work import GIVE_UP_KEYS, HTTP_KEYS, LIMIT_KEYS, USER_KEYS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["MANIFEST", "Shape", "fields_of", "json_schema"]

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/$defs/{name}"}


# -- shapes ---------------------------------------------------------------------------------------


class Shape:
    """A field's type; ``schema()`` is its JSON Schema (``$defs`` names are shared)."""

    description: str = ""

    def schema(self) -> Json:
        raise NotImplementedError

    def described(self) -> Json:
        out = self.schema()
        if self.description and "$ref" not in out:
            out = {"description": self.description, **out}
        return out


def _sourced(*cores: Json) -> Json:
    """``cores``, or a string the loader resolves first (``${NAME}``, ``{secret: ...}``)."""
    return {"anyOf": [*cores, _ref("interpolated"), _ref("secret")]}


@dataclass(frozen=True)
class Leaf(Shape):
    """A value of one of the loader's scalar kinds (see ``_LEAVES``)."""

    kind: str
    description: str = ""

    def schema(self) -> Json:
        return _ref(self.kind)


@dataclass(frozen=True)
class Number(Shape):
    """A number from ``low`` (to ``high``), the bounds the loader's checks put on it.

    The loader's own checks (``need_number``, ``need_count``, ``need_int_in``, ``replicas``)
    stay the authority; ``tests/test_schema.py`` checks each bound here against them.
    """

    low: float = 0
    high: float | None = None
    description: str = ""
    json_type: ClassVar[str] = "number"

    def schema(self) -> Json:
        core: Json = {"type": self.json_type, "minimum": self.low}
        if self.high is not None:
            core["maximum"] = self.high
        if self.json_type == "number":
            # Text in a number's form too, as the loader takes it: YAML 1.1 reads 1.5e1 and
            # 1e3 as text (its bounds are the loader's to check then).
            return _sourced(core, {"type": "string", "pattern": _BARE})
        return _sourced(core)


@dataclass(frozen=True)
class Count(Number):
    """A whole number from ``low`` (to ``high``): see ``Number``."""

    json_type: ClassVar[str] = "integer"


@dataclass(frozen=True)
class Choice(Shape):
    values: tuple[str, ...]
    description: str = ""

    def schema(self) -> Json:
        return _sourced({"enum": list(self.values)})


@dataclass(frozen=True)
class Const(Shape):
    value: Any
    description: str = ""

    def schema(self) -> Json:
        return {"const": self.value}


@dataclass(frozen=True)
class ListOf(Shape):
    """A list of ``item``; ``single`` when the loader takes a lone item as a list of one."""

    item: Shape
    single: bool = False
    min_items: int = 0
    description: str = ""

    def schema(self) -> Json:
        items: Json = {"type": "array", "items": self.item.described()}
        if self.min_items:
            items["minItems"] = self.min_items
        return {"anyOf": [items, self.item.described()]} if self.single else items


@dataclass(frozen=True)
class AnyOf(Shape):
    options: tuple[Shape, ...]
    description: str = ""

    def schema(self) -> Json:
        return {"anyOf": [option.described() for option in self.options]}


@dataclass(frozen=True)
class MapOf(Shape):
    """A mapping whose keys the user names (env variables, breakers); each value a ``value``."""

    value: Shape
    nullable: bool = True
    names: str = ""  # a pattern the keys match, when the loader checks them
    description: str = ""

    def schema(self) -> Json:
        out: Json = {"type": "object", "additionalProperties": self.value.described()}
        if self.names:
            out["propertyNames"] = {"pattern": self.names}
        return {"anyOf": [out, {"type": "null"}]} if self.nullable else out


@dataclass(frozen=True)
class Fields(Shape):
    """A mapping of the loader's fixed keys; ``nullable`` where the loader reads ``key:`` as {}."""

    types: Mapping[str, Shape]
    required: tuple[str, ...] = ()
    nullable: bool = True
    description: str = ""

    def schema(self) -> Json:
        out: Json = {
            "type": "object",
            "properties": {key: shape.described() for key, shape in self.types.items()},
            "additionalProperties": False,
        }
        if self.required:
            out["required"] = list(self.required)
        return {"anyOf": [out, {"type": "null"}]} if self.nullable else out


@dataclass(frozen=True)
class Named(Shape):
    """A shape kept once under ``$defs`` (and recursive: a group's jobs hold groups)."""

    name: str
    description: str = ""

    def schema(self) -> Json:
        return _ref(self.name)


def fields_of(
    keys: Sequence[str],
    types: Mapping[str, Shape],
    *,
    required: Sequence[str] = (),
    nullable: bool = True,
    description: str = "",
) -> Fields:
    """The loader's ``keys`` with their ``types``; raises unless both name the same fields."""
    if set(keys) != set(types) or len(keys) != len(types):
        missing = sorted(set(keys) - set(types))
        extra = sorted(set(types) - set(keys))
        msg = f"manifest fields and their types differ: untyped {missing}, unknown {extra}"
        raise RuntimeError(msg)
    ordered = {key: types[key] for key in keys}  # the loader's order, which --explain shows too
    return Fields(ordered, tuple(required), nullable=nullable, description=description)


# -- the loader's scalar kinds --------------------------------------------------------------------


def _insensitive(word: str) -> str:
    """``ms`` -> ``[mM][sS]``: JSON Schema patterns have no flags."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _units(units: Sequence[str]) -> str:
    return "|".join(_insensitive(u) for u in sorted(units, key=len, reverse=True))


_BARE: Final = rf"^\s*{NUMBER}{EXPONENT}\s*$"
_DURATION: Final = rf"^\s*(?:{NUMBER}\s*(?:{_units(list(DURATION_UNITS))})\s*)+$"
_SIZE: Final = rf"^\s*{NUMBER}\s*(?:{_units(list(SIZE_UNITS))})?\s*$"
_STRING: Final = {"type": "string"}

_LEAVES: Final[dict[str, Json]] = {
    # ``${NAME}`` anywhere in a string; ``$${`` is a literal and resolves to text as written.
    "interpolated": {"type": "string", "pattern": r"\$\{"},
    "secret": {
        "type": "object",
        "description": "a secret read from the environment or a file; logs show it as ***",
        "properties": {
            "secret": {
                "type": "object",
                "properties": {"env": _STRING, "file": _STRING},
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
            }
        },
        "required": ["secret"],
        "additionalProperties": False,
    },
    "duration": _sourced(
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
        {"type": "string", "pattern": _DURATION},
        {"type": "string", "pattern": _BARE},
    )
    | {
        "description": "a duration: 250ms, 30s, 5m, 1h, 1d, 1h30m or a number of seconds, "
        f"up to {fmt_duration(MAX_DURATION)}"
    },
    "size": _sourced(
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": _SIZE},
    )
    | {"description": "a size: 512KiB, 10MiB, 1GiB, 10MB or a number of bytes"},
    "count": _sourced({"type": "integer", "minimum": 0}) | {"description": "a whole number"},
    # Text in a number's form too: YAML 1.1 reads 1.5e1 and 1e3 as text (the loader's number)
    "number": _sourced({"type": "number"}, {"type": "string", "pattern": _BARE}),
    "flag": _sourced({"type": "boolean"}),
    "text": _sourced({"type": "string", "minLength": 1}),
    "scalar": _sourced({"type": "string"}, {"type": "number"}),
    "name": _sourced({"type": "string", "pattern": NAME.pattern})
    | {"description": "letters, digits, '_', '.' or '-'"},
    "ray_address": _sourced(
        {
            "type": "string",
            "pattern": r"^\s*(?:auto|local|(?:ray://)?(?:\[[0-9A-Fa-f:.]+\]"
            r"|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):\d{1,5})\s*$",
        }
    )
    | {"description": "a Ray cluster address: auto, local, HOST:PORT or ray://HOST:PORT"},
    "any": {},
}

DURATION: Final = Leaf("duration")
SIZE: Final = Leaf("size")
COUNT: Final = Leaf("count")
AT_LEAST_1: Final = Count(1)
EXIT_CODE: Final = Count(*EXIT_CODES, "an exit code")
HTTP_STATUS: Final = Count(*HTTP_STATUSES, "an HTTP status")
NUMBER_LEAF: Final = Leaf("number")
FLAG: Final = Leaf("flag")
TEXT: Final = Leaf("text")
SCALAR: Final = Leaf("scalar")
NAME_LEAF: Final = Leaf("name")
ANY: Final = Leaf("any")
ARGV: Final = AnyOf(
    (Leaf("text"), ListOf(SCALAR)), description="a list of argv strings or a shell command"
)
UNLIMITED: Final = Choice(("unlimited",))

# -- the manifest ---------------------------------------------------------------------------------

_WINDOW = fields_of(WINDOW_KEYS, {"max_restarts": COUNT, "within": DURATION})
_MULTIPLIER = Number(*MULTIPLIERS, description="a growth factor, at least 1")
_JITTER = Number(*JITTERS, description="a fraction of the wait, 0 to 1")
_GROWTH = fields_of(
    GROWTH_KEYS,
    {"initial": DURATION, "max": DURATION, "multiplier": _MULTIPLIER, "jitter": _JITTER},
)
_POLICY: Final[dict[str, Shape]] = {
    "strategy": Choice(tuple(s.value for s in Strategy)),
    "intensity": _WINDOW,
    "backoff": _GROWTH,
    "on_exhausted": Choice(tuple(o.value for o in OnExhausted)),
    "cooldown": fields_of(
        COOLDOWN_KEYS,
        {
            "duration": DURATION,
            "probation": DURATION,
            "multiplier": _MULTIPLIER,
            "max": DURATION,
            "max_cycles": AnyOf((AT_LEAST_1, Const(None))),
        },
    ),
}
_RESTART = Choice(tuple(r.value for r in RestartType))
_STRINGS = MapOf(SCALAR, description="names to text values")
_NOTIFY = ListOf(
    fields_of(
        NOTIFY_KEYS,
        {
            "name": TEXT,
            "on": ListOf(Choice(tuple(e.value for e in NotifyEvent)), single=True),
            "command": ARGV,
            "http": fields_of(NOTIFY_HTTP_KEYS, {"url": TEXT, "headers": _STRINGS}, nullable=False),
            "timeout": DURATION,
            "retry": COUNT,
            "damp": DURATION,
        },
        required=("on",),
        nullable=False,
    ),
    description="notifications: on which events to run a command or POST to a URL",
)
_LIMIT = AnyOf((COUNT, SIZE, DURATION, UNLIMITED))
_JOB_TYPES: Final[dict[str, Shape]] = {
    "name": NAME_LEAF,
    "command": ARGV,
    "http": fields_of(
        HTTP_KEYS,
        {
            "method": TEXT,
            "url": TEXT,
            "headers": _STRINGS,
            "params": _STRINGS,
            "json": ANY,
            "body": SCALAR,
            "timeout": DURATION,
            "expect_status": ListOf(HTTP_STATUS, single=True),
        },
        nullable=False,
    ),
    "python": TEXT,
    "args": ListOf(ANY),
    "kwargs": MapOf(ANY),
    "cwd": TEXT,
    "env": _STRINGS,
    "env_file": ListOf(TEXT, single=True),
    "service": FLAG,
    "every": DURATION,
    "times": AT_LEAST_1,
    "cron": TEXT,
    "persistent": FLAG,
    "jitter": DURATION,
    "timeout": DURATION,
    "retry": AnyOf(
        (
            fields_of(
                RETRY_KEYS,
                {
                    "attempts": AT_LEAST_1,
                    "wait": _GROWTH,
                    "on": ListOf(SCALAR, single=True),
                },
            ),
        )
    ),
    "breaker": NAME_LEAF,
    "restart": _RESTART,
    "autostart": FLAG,
    "replicas": Count(1, MAX_REPLICAS),
    "depends_on": ListOf(NAME_LEAF, single=True),
    "ready": fields_of(
        READY_KEYS,
        {
            "tcp": TEXT,
            "http": TEXT,
            "command": ARGV,
            "timeout": DURATION,
            "interval": DURATION,
        },
        nullable=False,
    ),
    "stop": fields_of(STOP_KEYS, {"signal": SCALAR, "grace": DURATION}),
    "placement": AnyOf(
        (
            Choice(PLACEMENTS),
            fields_of(
                PLACEMENT_KEYS,
                {
                    "ray": fields_of(
                        RAY_FIELDS,
                        {
                            "num_cpus": NUMBER_LEAF,
                            "num_gpus": NUMBER_LEAF,
                            "memory": SIZE,
                            "resources": MapOf(NUMBER_LEAF),
                            "node": SCALAR,
                        },
                    )
                },
                nullable=False,
            ),
        )
    ),
    "isolation": Choice(ISOLATIONS),
    "output": AnyOf(
        (
            FLAG,
            fields_of(
                OUTPUT_KEYS, {"max_bytes": SIZE, "backups": COUNT, "log": FLAG}, nullable=False
            ),
        )
    ),
    "notify": _NOTIFY,
    "user": AnyOf(
        (
            SCALAR,
            fields_of(
                USER_KEYS, {"name": SCALAR, "group": SCALAR}, required=("name",), nullable=False
            ),
        )
    ),
    "umask": Leaf("text", description='octal, in quotes: "027"'),
    "limits": fields_of(LIMIT_KEYS, dict.fromkeys(LIMIT_KEYS, _LIMIT), nullable=False),
    "success_exit_codes": ListOf(EXIT_CODE, single=True),
    "give_up_on": fields_of(
        GIVE_UP_KEYS,
        {
            "exit_codes": ListOf(EXIT_CODE, single=True),
            "exceptions": ListOf(TEXT, single=True),
            "http_status": ListOf(HTTP_STATUS, single=True),
        },
    ),
}
JOB: Final = fields_of(
    JOB_KEYS,
    _JOB_TYPES,
    required=("name",),
    nullable=False,
    description="a job: a name and one of command, http or python",
)
DEFAULTS: Final = fields_of(
    [key for key in JOB_KEYS if key not in OWN_ONLY],
    {key: shape for key, shape in _JOB_TYPES.items() if key not in OWN_ONLY},
    description="job fields every job inherits unless it sets them",
)
_CHILDREN = ListOf(Named("child"), min_items=1, description="jobs and groups, started in order")
GROUP: Final = fields_of(
    GROUP_KEYS,
    {"group": NAME_LEAF, **_POLICY, "restart": _RESTART, "notify": _NOTIFY, "jobs": _CHILDREN},
    required=("group", "jobs"),
    nullable=False,
    description="a group: its own supervisor for its jobs",
)
MANIFEST: Final = fields_of(
    TOP_KEYS,
    {
        "version": Const(1),
        "runtime": Choice(("threads", "gevent")),
        "state_dir": TEXT,
        "logging": fields_of(
            LOGGING_KEYS,
            {
                "level": Choice(LEVELS),
                "file": AnyOf((TEXT, Const(None))),
                "rotate": AnyOf(
                    (
                        fields_of(
                            ROTATE_KEYS,
                            {"max_bytes": SIZE, "backups": COUNT, "when": Choice(ROTATE_WHEN)},
                        ),
                    )
                ),
                "format": Choice(LOG_FORMATS),
            },
        ),
        "defaults": DEFAULTS,
        "supervisor": fields_of(ROOT_KEYS, {**_POLICY, "budget": _WINDOW}),
        "breakers": MapOf(
            fields_of(
                BREAKER_KEYS,
                {
                    "failure_threshold": AT_LEAST_1,
                    "reset_timeout": DURATION,
                    "half_open_max_calls": AT_LEAST_1,
                },
            ),
            names=NAME.pattern,
            description="circuit breakers by name, which jobs share with breaker: NAME",
        ),
        "cluster": fields_of(
            CLUSTER_KEYS,
            {
                "address": AnyOf((Leaf("ray_address"), Const(None))),
                "namespace": AnyOf((TEXT, Const(None))),
            },
        ),
        "notify": _NOTIFY,
        "jobs": _CHILDREN,
        "http": fields_of(
            LISTEN_KEYS,
            {
                "listen": SCALAR,
                "token": AnyOf((TEXT, Const(None))),
                "heartbeat": DURATION,
                "reads": Choice(READS),
            },
        ),
    },
    required=("version", "jobs"),
    nullable=False,
)


def json_schema() -> Json:
    """The manifest's JSON Schema (draft 2020-12)."""
    # A mapping with ``group`` is a group, any other a job: the loader's own test.
    child = {
        "if": {"type": "object", "required": ["group"]},
        "then": _ref("group"),
        "else": _ref("job"),
    }
    defs: Json = {**_LEAVES, "child": child, "job": JOB.schema(), "group": GROUP.schema()}
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "jobvisor manifest",
        "description": "A jobvisor manifest (jobs.yaml): jobs, groups and their supervisors.",
        **MANIFEST.schema(),
        # docker compose's extension fields: blocks a file keeps for its anchors, not read
        "patternProperties": {"^x-": {}},
        "$defs": defs,
    }
