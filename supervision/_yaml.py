"""YAML reading for the manifest: safe, with the line of every key and list item.

Mappings and lists come back as ``LineDict`` / ``LineList``, which keep
lines and keys written twice; timestamps stay text and a bool-looking key
(``on:``) keeps its text. libyaml parses when it is installed; a document it
refuses is read again by the pure-Python parser, whose messages
(``FILE:LINE:COL``) are the ones users see.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from supervision._issues import Issue, ManifestError

__all__ = ["LineDict", "LineList", "read_yaml"]


class LineDict(dict[Any, Any]):
    """A mapping read from YAML, with the line of each key and the keys written twice."""

    __slots__ = ("duplicates", "line", "lines")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[Any, int | None] = {}
        self.duplicates: list[tuple[Any, int, int]] = []  # (key, line, first line)


class LineList(list[Any]):
    """A sequence read from YAML, with the line of each item."""

    __slots__ = ("line", "lines")

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int | None] = []


class _Constructing:
    """Construction shared by both loaders: a value YAML cannot convert becomes a marked error."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError, TypeError) as exc:
            # e.g. an integer of more than 4300 digits: report it where it is written.
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None


class _Loader(_Constructing, yaml.SafeLoader):
    """``yaml.SafeLoader`` (pure Python) that records lines and keeps timestamps as text.

    Its error messages are the ones users see: the fast loader defers to it
    for any document it refuses.
    """


_FAST: Final = getattr(yaml, "CSafeLoader", None)
_STR: Final = "tag:yaml.org,2002:str"


class _FastLoader(_Constructing, _FAST or yaml.SafeLoader):  # type: ignore[misc]
    """The same with libyaml's parser: ten times faster on big manifests, when it is installed."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    data = LineDict(node.start_mark.line + 1)
    yield data
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            ident = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if ident in seen:
                data.duplicates.append((key_node.value, line, seen[ident]))
            else:
                seen[ident] = line
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:bool":
            key = key_node.value  # a key is a name: ``on:`` (retry.on) is "on", not YAML 1.1's true
        else:
            key = _value(loader, key_node)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found a key that is a list or a mapping",
                key_node.start_mark,
            ) from None
        data[key] = _value(loader, value_node)
        data.lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> Any:
    data = LineList(node.start_mark.line + 1)
    yield data
    for item in node.value:
        data.append(_value(loader, item))
        data.lines.append(item.start_mark.line + 1)


def _value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # Most values of a manifest are plain strings: taking their text directly skips the
    # constructor's bookkeeping, a third of the time of a big manifest.
    if node.tag == _STR and isinstance(node, yaml.ScalarNode):
        return node.value
    return loader.construct_object(node, deep=False)


def _construct_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


for _cls in (_Loader, _FastLoader):
    _cls.add_constructor("tag:yaml.org,2002:map", _construct_map)
    _cls.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
    _cls.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)


def read_yaml(text: str, file: str) -> Any:
    """The data of ``text``, or a ``ManifestError`` with one issue at ``FILE:LINE:COL``."""
    if _FAST is not None:
        try:
            return _load(_FastLoader, text)
        except (yaml.YAMLError, RecursionError, ValueError):
            pass  # the pure loader says what is wrong, in its words
    issue: Issue
    try:
        return _load(_Loader, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            where = ""
            if exc.context_mark is not None and exc.context_mark is not mark:
                where = (
                    f" that started at line {exc.context_mark.line + 1}, "
                    f"column {exc.context_mark.column + 1}"
                )
            message = (
                f"{exc.context}{where}, {message}"
                if message.startswith("but ")
                else f"{message} ({exc.context}{where})"
            )
        line = None if mark is None else mark.line + 1
        column = None if mark is None else mark.column + 1
        issue = Issue("", line, f"invalid YAML: {message}", file, column)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"invalid YAML: expected printable text, got the character #x{char:04x}"
        issue = Issue("", line, message, file, column)
    except yaml.YAMLError as exc:
        issue = Issue("", None, f"invalid YAML: {exc}", file)
    except RecursionError:
        issue = Issue("", None, "invalid YAML: expected less deeply nested data", file)
    raise ManifestError([issue], file)


def _load(cls: type[yaml.SafeLoader], text: str) -> Any:
    loader = cls(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
