"""``${NAME}`` interpolation and secrets: the manifest's data with every string resolved.

Rules (SPEC §3): ``${NAME}`` is replaced from the environment in every
string *value* (mapping keys are names and stay as written);
``${NAME:-fallback}`` gives a fallback; ``$${`` writes a literal ``${``. Any
other ``${...}`` is an error. ``${secret:NAME}`` is replaced by the secret
in ``NAME`` inside a longer string; ``{secret: {env: NAME}}`` /
``{secret: {file: PATH}}`` (a mapping whose only key is ``secret``) is a
whole secret value; a file is read as UTF-8, relative to the manifest's
directory, without one trailing newline: a regular file (through symlinks, as
Kubernetes mounts secrets) of at most ``MAX_SECRET_FILE`` bytes, so that a FIFO
or a device named there is refused instead of hanging or filling memory. It is
refused too when another user owns it or may write to it, by the env file's rule
(``_envfile.loose``): that user could have chosen the secret (an HTTP token
planted in ``/tmp`` is one its planter knows). Every secret value is collected
so that reports mask it, one too short to mask is warned of (once, where it is
first named), and strings made of one are ``Secret``s.

The expansion is bounded (``MAX_VALUES`` values once aliases are expanded,
``MAX_DEPTH`` levels): a document past a bound is reported once, as that,
and ``bounded`` tells the caller not to read any further.
"""

from __future__ import annotations

import re
import stat
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from supervision._envfile import loose, planted_link
from supervision._files import FileTooLargeError, NotRegularFileError, read_regular
from supervision._interpolation import (
    INTERPOLATION,
    SECRET_VARIABLE,
    VARIABLE,
    supervisord_said,
)
from supervision._issues import HoldsSecret, Secret, ShellText, Text, join, show, unknown_key
from supervision._secrets import SecretMasker, url_parts
from supervision._units import fmt_size
from supervision._yaml import LineDict, LineList

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["MAX_DEPTH", "MAX_SECRET_FILE", "MAX_VALUES", "Resolver", "looks_secret", "too_short"]

MAX_DEPTH: Final = 64  # levels of nesting a manifest may have
MAX_VALUES: Final = 100_000  # values a manifest may hold once aliases are expanded
MAX_SECRET_FILE: Final = 1 << 20  # bytes a secret file may hold: a key, a token, a certificate
# What a secret or variable that could not be read stands for, once its issue is reported: a
# valid value everywhere (argv, env, header, URL), so it is not reported again as "null" or
# an empty header; the manifest does not load, so it never runs.
UNRESOLVED: Final = "unresolved"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_LOOKING = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

# What a POSIX shell reads as syntax in a word outside quotes (spaces are left out: a value
# split into words is a different slip, and often meant); inside double quotes only these
# four are; inside single quotes only the closing quote.
_SHELL_SYNTAX: Final = re.compile(r"[;&|<>()$`\\\"'\n*?\[#~]")
_IN_DOUBLE_QUOTES: Final = re.compile(r'[$`\\"]')


def _typed(result: str, secrets: list[str], shell: list[str]) -> Text:
    """An interpolated string, as what it holds: a secret, some secret, shell syntax."""
    if secrets and len(secrets) == 1 and result == secrets[0]:
        return Secret(result)
    if secrets:
        return HoldsSecret(result)
    if shell:
        told = ShellText(result)
        told.names = tuple(dict.fromkeys(shell))
        return told
    return Text(result)


def shell_syntax(value: str, before: str) -> bool:
    """Whether a shell reads ``value`` as syntax when it stands after the text ``before``
    of a command string: ``a;b`` outside quotes, ``a"b`` inside double quotes..."""
    if not _SHELL_SYNTAX.search(value):  # most values: a word, a path, a host
        return False
    quote = ""
    escaped = False
    for char in before:
        if escaped:
            escaped = False
        elif quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif quote == '"':
            quote = "" if char == '"' else quote
        elif char in "'\"":
            quote = char
    if quote == "'":
        return "'" in value
    if quote == '"':
        return _IN_DOUBLE_QUOTES.search(value) is not None
    return _SHELL_SYNTAX.search(value) is not None


def _in_url(value: str, before: str, after: str) -> str:
    """A secret as it must stand in a URL, between the texts ``before`` and ``after`` it.

    At the start, or where the host is, as written (a base URL, a webhook, a host:port); in
    the login, encoded but for ``:`` (which still splits user from password); anywhere else
    (a path segment, a query value), encoded whole.
    """
    if not before:
        return value
    scheme = before.find("://")
    if scheme >= 0:
        authority = before[scheme + 3 :]
        if not any(c in authority for c in "/?#"):  # still in the authority
            if "@" in authority:
                return value  # the host, after the login
            ahead = re.split(r"[/?#]", after, maxsplit=1)[0]
            return urllib.parse.quote(value, safe=":") if "@" in ahead else value
    return urllib.parse.quote(value, safe="")


# Where a string is a URL: a secret inside it is percent-encoded (``interpolate``).
_IN_URL: Final = re.compile(r"(\.url|\.ready\.http)$")
_ONE_SECRET: Final = re.compile(r"\$\{secret:[A-Za-z_][A-Za-z0-9_]*\}")


def too_short(what: str) -> str:
    """The warning for a secret (``what``: where its value comes from) the masker cannot hide."""
    return (
        f"{what} has fewer than {SecretMasker.MIN_LENGTH} characters: too short to mask (masked, "
        "it would hide that text in every line), so it shows in clear wherever it appears"
    )


def looks_secret(name: str) -> bool:
    """Whether a variable's name says it holds a secret (``API_TOKEN``, ``DB_PASSWORD``)."""
    return bool(_SECRET_LOOKING.search(name))


class Resolver:
    """Resolves a document once; problems go to ``add(path, line, message)``, doubts to ``warn``."""

    def __init__(
        self,
        env: Mapping[str, str],
        base_dir: Path,
        add: Callable[[str, int | None, str], None],
        warn: Callable[[str, int | None, str], None],
    ) -> None:
        self.env = env
        self.base_dir = base_dir
        self.add = add
        self.warn = warn
        self.secrets: set[str] = set()
        self._short: set[str] = set()  # secrets warned of as too short to mask: each once
        # Those warnings: they name no value, so the issues' masking of short secrets where
        # they stand whole ("ab") must leave them whole too (it made "vari***le").
        self.valueless: set[str] = set()
        self.budget = MAX_VALUES
        self.bounded = False  # a bound was hit: what was read is incomplete

    def resolve(  # noqa: PLR0911 - one return per kind of value reads best
        self, value: Any, path: str, line: int | None, depth: int = 0
    ) -> Any:
        """A copy of ``value`` with every string interpolated and every secret read."""
        if self.bounded:
            return None
        self.budget -= 1
        if self.budget < 0:
            self.bounded = True
            self.add(
                path,
                line,
                f"expected a manifest of at most {MAX_VALUES} values in all (each scalar, list "
                "and mapping, aliases expanded), got more",
            )
            return None
        if isinstance(value, str):
            if "%(" in value and (said := supervisord_said(value)) is not None:
                self.warn(path, line, said)
            return self.interpolate(value, path, line) if "${" in value else value
        if not isinstance(value, dict | list | tuple):
            return value
        if depth >= MAX_DEPTH:
            self.bounded = True
            self.add(
                path,
                line,
                f"expected at most {MAX_DEPTH} levels of nesting (mappings and lists inside each "
                "other: a group in a group takes 2), got more: a recursive alias, or groups "
                "nested too deep",
            )
            return None
        if isinstance(value, dict):
            if len(value) == 1 and "secret" in value:
                return self.secret(value, path, line, depth)
            return self._mapping(value, path, line, depth)
        return self._sequence(value, path, line, depth)

    def _mapping(self, value: dict[Any, Any], path: str, line: int | None, depth: int) -> Any:
        lines = getattr(value, "lines", {})
        for key, key_line, first in getattr(value, "duplicates", ()):
            self.add(
                join(path, key),
                key_line,
                f"expected each key once, got {key!r} again (first at line {first})",
            )
        resolved = {
            key: self.resolve(item, join(path, key), lines.get(key, line), depth + 1)
            for key, item in value.items()
        }
        if isinstance(value, LineDict) and all(resolved[k] is v for k, v in value.items()):
            return value  # nothing to replace: YAML's own mapping, lines and all
        mapping = LineDict(getattr(value, "line", line))
        mapping.update(resolved)
        mapping.lines.update((key, lines.get(key, line)) for key in resolved)
        return mapping

    def _sequence(
        self, value: list[Any] | tuple[Any, ...], path: str, line: int | None, depth: int
    ) -> Any:
        item_lines = getattr(value, "lines", [])
        resolved = [
            self.resolve(
                item, f"{path}[{i}]", item_lines[i] if i < len(item_lines) else line, depth + 1
            )
            for i, item in enumerate(value)
        ]
        if isinstance(value, LineList) and all(
            a is b for a, b in zip(resolved, value, strict=True)
        ):
            return value
        sequence = LineList(getattr(value, "line", line))
        sequence.extend(resolved)
        sequence.lines.extend(
            item_lines[i] if i < len(item_lines) else line for i in range(len(resolved))
        )
        return sequence

    def interpolate(self, text: str, path: str, line: int | None) -> str:
        """``text`` with ``${NAME}``, ``${NAME:-x}``, ``${secret:NAME}`` and ``$${`` replaced.

        A secret inside a URL (an http job's or notifier's ``url``, a readiness probe's
        ``http``) is percent-encoded where it stands: its ``@``, ``/``, ``&`` or space would
        otherwise change which host is called or split a query value, and only its first
        part would be recognised as the password to hide (``_in_url`` says how, by where it
        stands). A URL that is one secret, whole, is taken as written, and so is one that
        begins it: it holds the scheme and the host.
        """
        secrets: list[str] = []
        shell: list[str] = []  # the ${NAME}s whose values a shell would read as syntax
        in_url = _IN_URL.search(path) is not None
        encode = in_url and not _ONE_SECRET.fullmatch(text)

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            inner, closed = match.group(1), match.group(2)
            if closed and (secret := SECRET_VARIABLE.fullmatch(inner)):
                value = self._secret_in(text, match, secret.group(1), path, line, url=encode)
                if in_url and match.start() == 0:  # the URL's beginning: scheme, host, path...
                    self.secrets |= url_parts(value)
                secrets.append(value)
                return value
            variable = VARIABLE.fullmatch(inner) if closed else None
            if variable is None:
                shown = f"${{{inner}{closed or ''}"
                self.add(
                    path,
                    line,
                    f"expected ${{NAME}} or ${{NAME:-fallback}} (or ${{secret:NAME}}) with NAME of "
                    f"letters, digits and '_', got {shown!r} (write $${{ for a literal ${{)",
                )
                return ""
            name, fallback = variable.groups()
            if looks_secret(name) and path != "http.token":  # masked: see _manifest's token
                self.warn(
                    path,
                    line,
                    f"${{{name}}} looks like a secret but is plain interpolation, shown in clear "
                    f"in logs and status; write ${{secret:{name}}} to mask it",
                )
            found = self.env.get(name)
            if found is None:
                if fallback is not None:
                    return str(fallback)
                self.add(
                    path,
                    line,
                    f"expected environment variable {name} to be set (for ${{{name}}}), "
                    f"got it unset; set it or write ${{{name}:-fallback}}",
                )
                return UNRESOLVED
            if shell_syntax(found, text[: match.start()]):
                shell.append(name)
            return str(found)

        return _typed(INTERPOLATION.sub(substitute, text), secrets, shell)

    def _secret_in(
        self, text: str, match: re.Match[str], name: str, path: str, line: int | None, *, url: bool
    ) -> str:
        """The value of ``${secret:NAME}`` at ``match`` in ``text``; in a URL (``url``) as it
        must stand there (``_in_url``), and masked in that form too."""
        value = self._env_secret(name, path, line, f" (for ${{secret:{name}}})")
        if value is None:
            return UNRESOLVED
        if not url:
            return value
        encoded = _in_url(value, text[: match.start()], text[match.end() :])
        if encoded != value:
            self.secrets.add(encoded)
        return encoded

    def _env_secret(self, name: str, path: str, line: int | None, written: str = "") -> str | None:
        """The secret in variable ``name``, collected; None (an issue) when it is unset."""
        value = self.env.get(name)
        if value is None:
            self.add(
                path, line, f"expected environment variable {name} to be set{written}, got it unset"
            )
            return None
        self.collect(value, path, line, f"the secret in environment variable {name}")
        return value

    def collect(self, value: str, path: str, line: int | None, what: str) -> None:
        """Collect a secret's ``value`` (``what``: where it comes from) to be masked; one too
        short to mask is warned of, once however many places name it."""
        if not value:
            return
        # Kept even when short: an issue's message hides it where it stands whole (``mask``).
        self.secrets.add(value)
        if value.strip() and not SecretMasker.maskable(value) and value not in self._short:
            self._short.add(value)
            message = f"{too_short(what)}; give it a longer value"
            self.valueless.add(message)
            self.warn(path, line, message)

    def secret(self, value: dict[Any, Any], path: str, line: int | None, depth: int) -> Secret:
        """The value of ``{secret: {env: NAME}}`` or ``{secret: {file: PATH}}``."""
        at = join(path, "secret")
        at_line = getattr(value, "lines", {}).get("secret", line)
        source = value["secret"]
        if not isinstance(source, dict):
            self.add(
                at,
                at_line,
                f"expected a secret source: {{env: NAME}} or {{file: PATH}}, got {show(source)}",
            )
            return Secret(UNRESOLVED)
        lines = getattr(source, "lines", {})
        entries: dict[str, tuple[Any, str, int | None]] = {}
        unknown = False
        for key, item in source.items():
            where, where_line = join(at, key), lines.get(key, at_line)
            if key in ("env", "file"):
                entries[key] = (item, where, where_line)
            else:
                unknown = True
                self.add(where, where_line, unknown_key(key, ("env", "file")))
        if len(entries) != 1:
            if entries or not unknown:  # a typo alone ('fil:') is said once, above
                got = " and ".join(entries) or "neither"
                self.add(at, at_line, f"expected exactly one of env or file, got {got}")
            return Secret(UNRESOLVED)
        kind, (item, where, where_line) = next(iter(entries.items()))
        if kind == "env":
            if not isinstance(item, str) or not _ENV_NAME.fullmatch(item):
                self.add(
                    where,
                    where_line,
                    f"expected an environment variable name like API_TOKEN, got {show(item)}",
                )
                return Secret(UNRESOLVED)
            found = self._env_secret(item, where, where_line)
        else:
            found = self._file(item, where, where_line, depth)
        if found and _IN_URL.search(path):  # a URL, whole: its parts may show on their own
            self.secrets |= url_parts(found)
        return Secret(UNRESOLVED if found is None else found)

    def _file(self, item: Any, path: str, line: int | None, depth: int) -> str | None:
        """The file's text without one trailing newline."""
        file_name = self.resolve(item, path, line, depth + 1)
        if not isinstance(file_name, str) or not file_name.strip() or "\0" in file_name:
            self.add(
                path, line, f"expected the path of a file holding the secret, got {show(item)}"
            )
            return None
        where = self.base_dir / Path(file_name).expanduser()
        try:
            data, st = read_regular(where, MAX_SECRET_FILE)
            value = data.decode("utf-8")
        except UnicodeDecodeError:  # its text would quote the secret's bytes
            reason = "not UTF-8 text"
        except NotRegularFileError as exc:
            reason = f"{exc.kind}, not a regular file"
        except FileTooLargeError as exc:
            size = "more" if exc.size is None else fmt_size(exc.size)
            self.add(
                path,
                line,
                f"expected a secret file up to {fmt_size(MAX_SECRET_FILE)}, got {str(where)!r} "
                f"of {size}",
            )
            return None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        else:
            # Whoever else could write the file could have chosen the secret: an HTTP token
            # planted in /tmp is one its planter knows.
            why = loose(st, "have chosen the secret and can change it") or planted_link(where)
            if why is not None:
                self.add(path, line, f"refusing the secret file {str(where)!r}: {why}")
                return None
            value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
            self._judge_file(where, st.st_mode, value, path, line)
            self.collect(value, path, line, f"the secret in file {str(where)!r}")
            return value
        self.add(path, line, f"expected a readable secret file {str(where)!r}, got: {reason}")
        return None

    def _judge_file(self, where: Path, mode: int, value: str, path: str, line: int | None) -> None:
        """Warnings, as ssh gives for a key: a secret others can read, or an empty one."""
        if mode & 0o077:
            self.warn(
                path,
                line,
                f"other users can read or change the secret file {str(where)!r} (mode "
                f"{stat.S_IMODE(mode):04o}); make it private: chmod 600",
            )
        if not value.strip():
            self.warn(path, line, f"the secret file {str(where)!r} is empty")
