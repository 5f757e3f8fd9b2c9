"""Secret masking and terminal-safe text: what every line jobvisor shows goes through.

``SecretMasker`` hides the manifest's secret values in any text, in
whatever quoting or escaping they reach it (shell, ``repr``, JSON, URL).
``printable`` (from ``supervision._printable``, re-exported here) escapes
the control characters that would let a job's output drive the terminal
that shows jobvisor's log.

Only the standard library is imported here, so control commands that mask
or print can use it without loading the runtime.
"""

from __future__ import annotations

import base64
import bisect
import html
import itertools
import json
import os
import re
import threading
import urllib.parse
from typing import TYPE_CHECKING, ClassVar, Final

from supervision._printable import printable, printable_json

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["SecretMasker", "printable", "printable_json", "url_parts"]


class SecretMasker:
    """Replaces every registered secret value with ``***`` in text.

    Thread-safe: ``add`` may be called while other threads ``mask``. Besides
    the value itself it registers the forms in which a value leaks into a
    line: its stripped form and, for a multi-line value such as a PEM key,
    each of its lines; the escaped forms shell quoting (``shlex.quote``,
    which jobvisor uses to show argv), ``repr``/``ascii`` with either quote,
    JSON and URL encoding give it, and other languages' JSON, HTML and URL
    encoders (Go's, PHP's: ``_FOREIGN``), hex in escapes in either case; and
    Python's escapes applied twice (a shell-quoted argv inside a JSON document
    or a ``repr``). Overlapping secrets (one a part of another, or two sharing
    characters) are masked as one stretch, so no piece of either is left in clear.

    Values (and forms) shorter than ``MIN_LENGTH`` characters are not
    registered: masking them would garble ordinary text (a one-character
    secret would mask that character everywhere) while hiding almost
    nothing. ``add`` returns False for such a value so a caller can warn.
    """

    MIN_LENGTH: ClassVar[int] = 4
    MASK: ClassVar[str] = "***"

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()  # every registered form; only grows
        self._written: set[str] = set()  # those of them that are not hex nor base64
        # Both match any form, longest first; _any only finds whether there is one.
        self._any: re.Pattern[str] | None = None
        self._at: re.Pattern[str] | None = None  # zero-width: the longest form at each position
        # The most UTF-8 bytes a form takes: a cut of a command's long line keeps that
        # much in view (``safe_cut``). 0: no secret, nothing to keep.
        self.longest = 0
        self._sorted: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self.add_all(secrets)

    @classmethod
    def maskable(cls, value: str) -> bool:
        """Whether ``add`` registers ``value``: it is long enough to hide in every line."""
        return len(value.strip()) >= cls.MIN_LENGTH

    def add(self, value: str) -> bool:
        """Register ``value``; return False if it is too short to be masked."""
        return self.add_all([value]) == 1

    def add_all(self, values: Iterable[str]) -> int:
        """Register each of ``values`` (one build for all: a build per value made many
        secrets quadratic); how many are long enough to be masked."""
        forms: set[str] = set()
        written: set[str] = set()  # the value as written and escaped: no hex, no base64
        added = 0
        for value in values:
            if not isinstance(value, str):
                raise TypeError(f"a secret must be a str, got {type(value).__name__}")
            if self.maskable(value):
                plain, encoded = _leak_forms(value)
                written |= {form for form in plain if len(form) >= self.MIN_LENGTH}
                forms |= written | {form for form in encoded if len(form) >= self.MIN_LENGTH}
                added += 1
        with self._lock:
            if forms <= self._forms:
                return added
            self._forms |= forms
            self._written |= written
            alternatives = _alternatives(sorted(self._forms))
            self._any = re.compile(alternatives)
            self._at = re.compile(f"(?=({alternatives}))")
            # For a clip mark's look (``_clipped``): the forms, and each one reversed, sorted,
            # so that "does a form start with this piece" is a bisection, not a scan. Not the
            # hex and base64 ones: any digit or letter starts one, and would be masked there.
            # Its escapes' hex in both cases, as the pattern matches them (``_folded``).
            ends = self._written | {_hex_cased(f, str.lower) for f in self._written}
            ends |= {_hex_cased(form, str.upper) for form in self._written}
            self._sorted = (tuple(sorted(ends)), tuple(sorted(f[::-1] for f in ends)))
            longest = max(len(form.encode("utf-8", "surrogatepass")) for form in forms)
            self.longest = max(self.longest, longest)
        return added

    def safe_cut(self, data: bytes, at: int) -> int:
        """Where to cut ``data`` near ``at`` so that no secret straddles the cut.

        A command's line longer than 64 KiB is logged (and written to its
        output file) in parts, each masked on its own: a secret cut in two
        would show both halves in clear. The cut is ``at``, or the start of
        the secret (of the stretch of overlapping ones) that straddles it, or
        its end when that starts ``data``. For a whole view, ``data`` holds
        ``longest - 1`` bytes past ``at`` (``actors._command`` waits for them).
        Costs one look at ``2 * longest`` bytes around ``at``.
        """
        span = self._straddling(data, at)
        if span is None:
            return at
        cut = at
        while span is not None and span[0] > 0:
            cut = span[0]
            span = self._straddling(data, cut)
        if span is None:
            return cut
        cut = at  # a secret begins the data: nothing of it can go before the cut
        while (span := self._straddling(data, cut)) is not None:
            cut = span[1]
        return cut

    def _straddling(self, data: bytes, at: int) -> tuple[int, int] | None:
        """The first start and last end (byte offsets) of the forms that ``at`` cuts, if any."""
        found = self._at
        reach = self.longest - 1
        if found is None or reach <= 0:
            return None
        low = max(0, at - reach)  # a form that starts before it ends by at
        window = data[low : at + reach].decode("utf-8", "surrogateescape")  # lossless
        span: tuple[int, int] | None = None
        for match in found.finditer(window):
            start = low + len(window[: match.start()].encode("utf-8", "surrogateescape"))
            if start >= at:
                break
            end = start + len(match.group(1).encode("utf-8", "surrogateescape"))
            if end > at:
                span = (start, end) if span is None else (span[0], max(span[1], end))
        return span

    def mask(self, text: str) -> str:
        """Return ``text`` with every registered secret replaced by ``***``."""
        found, at = self._any, self._at
        if found is None or at is None or not text:
            return text
        if _CLIP_WORDS in text:  # rare: a message or traceback clipped where it was made
            text = self._clipped(text)
        if found.search(text) is None:
            return text
        # Every position a form starts at, with the longest form there: the union of
        # these spans is what is secret, however the forms overlap.
        spans: list[list[int]] = []
        for match in at.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        pieces: list[str] = []
        last = 0
        for start, end in spans:
            pieces += (text[last:start], self.MASK)
            last = end
        pieces.append(text[last:])
        return "".join(pieces)

    def _clipped(self, text: str) -> str:
        """``text`` with the piece of a secret next to a clip mark masked.

        A long message or traceback is clipped where it is made (``clip_head``,
        ``clip_tail``: in a job's thread, or a child process), before anything masks it:
        the start (or end) of a secret it cut is no longer the secret. Only the piece that
        touches the mark is looked at, against every form: any start of one before
        ``... (N more characters)``, any end of one after ``(N more characters) ...``.
        """
        heads, tails = self._sorted  # one snapshot: a reload's add() replaces it whole
        most = max(map(len, heads), default=0) - 1  # a whole form is masked as any is
        for mark in reversed(list(_HEAD_CLIP.finditer(text))):
            at = mark.start()
            piece = _longest(heads, (text[at - n : at] for n in range(min(most, at), 0, -1)))
            if piece:
                text = text[: at - piece] + self.MASK + text[at:]
        for mark in reversed(list(_TAIL_CLIP.finditer(text))):
            at = mark.end()
            ends = (text[at : at + n][::-1] for n in range(min(most, len(text) - at), 0, -1))
            piece = _longest(tails, ends)
            if piece:
                text = text[:at] + self.MASK + text[at + piece :]
        return text

    def __len__(self) -> int:
        """The number of registered forms (never the values: they are secret)."""
        return len(self._forms)

    def __repr__(self) -> str:
        return f"<SecretMasker with {len(self._forms)} masked forms>"


# ``actors._python_call.clip_head`` and ``clip_tail``'s marks (the count has thousands commas).
_CLIP_WORDS: Final = " more characters)"
_HEAD_CLIP: Final = re.compile(r"\.\.\. \([0-9,]+ more characters\)")
_TAIL_CLIP: Final = re.compile(r"\([0-9,]+ more characters\) \.\.\.")


def _alternatives(forms: Iterable[str]) -> str:
    """A pattern that matches any of ``forms`` (none empty), the longest of those that
    start at a place: the forms as a trie, common beginnings written once.

    A plain alternation of every form is tried form by form at each character of a line;
    with a few secrets' dozens of forms (hex, base64, each escape) that was 50 us a line,
    the trie 3 to 10 times less. Nested too deep for ``re`` (thousands of forms each the
    start of the next), the plain one, longest first. Hex is matched in either case
    (``_folded``): forms that differ only there are one.
    """
    folded = sorted({_folded(form) for form in forms})
    try:
        pattern = _trie(folded)
        re.compile(f"(?=({pattern}))")  # as deep as the deepest use (``_at``)
    except (RecursionError, OverflowError, re.error):
        return "|".join(map(_literal, sorted(folded, key=lambda form: (-len(form), form))))
    return pattern


def _trie(forms: list[tuple[str, ...]]) -> str:
    # Sorted, the beginning all share is the first's and the last's; () (a form that ends
    # here) sorts first. Greedy, a longer form is tried before the end of a shorter one.
    common = os.path.commonprefix([forms[0], forms[-1]])  # noqa: RUF071 - of text, not paths
    rest = [form[len(common) :] for form in forms]
    ends = not rest[0]
    rest = rest[1:] if ends else rest
    if not rest:
        return _literal(common)
    branches = [_trie(list(group)) for _, group in itertools.groupby(rest, key=lambda f: f[0])]
    body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
    if ends:
        body = f"(?:{body})?"
    return _literal(common) + body


def _folded(form: str) -> tuple[str, ...]:
    """``form``'s characters, each hex letter of an escape in it (``%2f``, ``\\u00e9``,
    ``&#x27;``) and of the hex it begins with a class of both cases (``[fF]``): encoders
    differ in the case they write (Go and PHP ``\\u003C``, some URL quoting ``%2f``,
    ``hex()`` and ``.upper()``), and text may mix both.

    Whether a character is folded depends on those before it alone (an escape is taken
    from its mark, however short): forms that begin alike begin with the same classes,
    so the trie's branches never overlap, and its longest match stays the longest. A
    first character is kept as it is: a class there would keep ``re`` from skipping, at a
    character no form starts with, to the next (hex comes in both cases, ``_encoded``).
    """
    run = _HEX.match(form)
    spans = [(1, run.end())] if run else []
    if "%" in form or "\\" in form or "&#" in form:
        spans += (hit.span() for hit in _HEX_ESCAPE.finditer(form))
    if not spans:
        return tuple(form)
    chars = list(form)
    for start, end in spans:
        piece = form[start:end]
        chars[start:end] = map(_HEX_LETTERS.get, piece, piece)
    return tuple(chars)


def _hex_cased(form: str, case: Callable[[str], str]) -> str:
    """``form`` with the hex letters of its escapes in one ``case`` (``%2F`` as ``%2f``)."""
    if "%" not in form and "\\" not in form and "&#" not in form:
        return form
    # Only the hex letters: an escape's own letter (``\\U``, ``&#X``) stays as written.
    return _HEX_ESCAPE.sub(
        lambda hit: _HEX_LETTER.sub(lambda c: case(c.group()), hit.group()), form
    )


_HEX_LETTER: Final = re.compile("[a-fA-F]")


_HEX: Final = re.compile(r"[0-9a-fA-F]+")
# Runs of escapes, each as one stretch: a form of every byte escaped is one.
_HEX_ESCAPE: Final = re.compile(
    r"(?:%[0-9a-fA-F]{1,2})+|(?:\\x[0-9a-fA-F]{1,2})+|(?:\\u[0-9a-fA-F]{1,4})+"
    r"|(?:\\U[0-9a-fA-F]{1,8})+|&#[xX][0-9a-fA-F]+"
)
# A class token is longer than one character: ``_literal`` writes it as it is.
_HEX_LETTERS: Final = {c: f"[{c.lower()}{c.upper()}]" for c in "abcdefABCDEF"}


def _literal(tokens: Sequence[str]) -> str:
    """The pattern of ``_folded`` characters: each one escaped, each class as it is."""
    text = "".join(tokens)
    if len(text) == len(tokens):  # no class: most forms, escaped at once
        return re.escape(text)
    return "".join(token if len(token) > 1 else re.escape(token) for token in tokens)


def _longest(forms: tuple[str, ...], pieces: Iterable[str]) -> int:
    """The length of the first of ``pieces`` (longest first) that starts one of ``forms``
    (sorted), 0 for none: a bisection each."""
    for piece in pieces:
        i = bisect.bisect_left(forms, piece)
        if i < len(forms) and forms[i].startswith(piece):
            return len(piece)
    return 0


def _shell_single(text: str) -> str:
    # shlex.quote wraps a value in '...' and writes each ' as '"'"'; the part between
    # the outer quotes is what appears however much of an argv word the secret is.
    return text.replace("'", "'\"'\"'")


def _shell_double(text: str) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", text)


def _repr_inner(text: str) -> str:
    return repr(text)[1:-1]


def _repr_single(text: str) -> str:
    # repr picks its quote from the whole string; inside a longer one that holds both
    # quotes, ' is escaped: appending both forces that form (then the 4 added chars go).
    return repr(text + "'\"")[1:-4]


def _ascii_inner(text: str) -> str:
    return ascii(text)[1:-1]


def _ascii_single(text: str) -> str:
    return ascii(text + "'\"")[1:-4]


def _json_inner(text: str) -> str:
    return json.dumps(text)[1:-1]


def _json_unicode(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _url(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _url_plus(text: str) -> str:
    return urllib.parse.quote_plus(text, safe="")


def _url_path(text: str) -> str:
    # quote()'s default, a path's: '/' is kept as it is.
    return urllib.parse.quote(text)


def _url_every(text: str) -> str:
    # Every byte escaped, letters and digits too (some encoders and obfuscators do). %2b
    # for %2B, in this form and the others, the pattern takes as well (``_folded``).
    return "%" + _utf8(text).hex("%").upper()


def _url_component(text: str) -> str:
    # JavaScript's encodeURIComponent: ! ' ( ) * are kept.
    return urllib.parse.quote(text, safe="!'()*")


def _bytes_inner(text: str) -> str:
    # A response's body or a pipe's bytes shown as they are: raise Error(resp.content).
    return repr(_utf8(text))[2:-1]


def _bytes_single(text: str) -> str:
    return repr(_utf8(text) + b"'\"")[2:-4]


def _html(text: str) -> str:
    return html.escape(text)


def _html_text(text: str) -> str:
    return html.escape(text, quote=False)


def _xml(text: str) -> str:
    # XML's own entities (Java's, .NET's, lxml's escapers); html.escape writes &#x27;.
    return html.escape(text).replace("&#x27;", "&apos;")


def _html_decimal(text: str) -> str:
    # Go's html.EscapeString and html/template, Jinja's markupsafe.
    return html.escape(text).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")


def _html_php(text: str) -> str:
    # PHP's htmlspecialchars (ENT_QUOTES, its default since 8.1).
    return html.escape(text).replace("&#x27;", "&#039;")


def _html_ruby(text: str) -> str:
    # Ruby's CGI.escapeHTML and Rails' ERB::Util.html_escape.
    return html.escape(text).replace("&#x27;", "&#39;")


def _json_go(text: str) -> str:
    # Go's encoding/json (and Rails' to_json): HTML-safe, < > & and the JS line separators
    # as \u escapes, other characters as they are.
    return _json_unicode(text).translate(_JSON_HTML)


def _json_html(text: str) -> str:
    # The same over ASCII-only JSON (Django's json_script over json.dumps).
    return _json_inner(text).translate(_JSON_HTML)


def _json_php(text: str) -> str:
    # PHP's json_encode by default: / as \/, non-ASCII as \u escapes.
    return _json_inner(text).replace("/", "\\/")


def _json_php_unicode(text: str) -> str:
    # json_encode with JSON_UNESCAPED_UNICODE.
    return _json_unicode(text).replace("/", "\\/")


def _json_php_hex(text: str) -> str:
    # json_encode with JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT (Laravel's
    # @json): ' and " as \u escapes too. Every \" in JSON is a " (a backslash is \\).
    escaped = _json_php(text).translate(_JSON_HTML).replace('\\"', "\\u0022")
    return escaped.replace("'", "\\u0027")


_JSON_HTML: Final = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def _unicode_escape(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _encoded(text: str) -> set[str]:
    """A secret's bytes as hex and as base64, standard and URL-safe.

    In base64 the characters a secret's bytes stand for depend on where it starts among
    the bytes encoded (``user:SECRET`` in a Basic authorization): for each of the three
    places, the run of characters made of its bits alone, which shows whatever comes
    before or after it.
    """
    data = _utf8(text)
    found = {data.hex(), data.hex().upper()}
    for before in range(3):
        coded = base64.b64encode(b"\0" * before + data).decode("ascii")
        first, end = -(-8 * before // 6), 8 * (before + len(data)) // 6
        piece = coded[first:end]
        if len(piece) >= _BASE64_MIN:
            found |= {piece, piece.translate(_URL_SAFE)}
    return found


# Shorter runs of base64 characters come up by chance: four of them are any word.
_BASE64_MIN: Final = 8
_URL_SAFE: Final = str.maketrans("+/", "-_")


# Every escape a secret can pass through on its way into a line; the second list is
# what a line already escaped once can pass through again (a document, a repr).
_ESCAPES: Final[tuple[Callable[[str], str], ...]] = (
    _shell_single,
    _shell_double,
    _repr_inner,
    _repr_single,
    _ascii_inner,
    _ascii_single,
    _json_inner,
    _json_unicode,
    _url,
    _url_plus,
    _url_path,
    _bytes_inner,
    _bytes_single,
    _html,
    _html_text,
    _unicode_escape,
)
# Other languages' encoders: their forms are not escaped again (a Go document inside a
# Python repr), which would multiply them for lines no job writes.
_FOREIGN: Final[tuple[Callable[[str], str], ...]] = (
    _url_every,
    _url_component,
    _xml,
    _html_decimal,
    _html_php,
    _html_ruby,
    _json_go,
    _json_html,
    _json_php,
    _json_php_unicode,
    _json_php_hex,
)
_OUTER: Final[tuple[Callable[[str], str], ...]] = (
    _repr_inner,
    _repr_single,
    _json_inner,
    _json_unicode,
)


def url_parts(url: str) -> set[str]:
    """The parts of a secret ``url`` that a message may show without the rest of it.

    An HTTP client's error quotes the request's target (``/hook?key=...``), a
    server's redirect its own copy of the path, a log line the login: masking
    the whole URL misses each of them. Its login, password, path, query and
    fragment are secrets of their own (also percent-decoded); its scheme and
    host are not (every connection error names the host), nor a path ``/``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return set()
    found: set[str] = set()
    login, at, _ = parts.netloc.rpartition("@")
    # A short login, path or fragment (`bob`, `/api`) is no secret of its own, and masked it
    # would hide ordinary text everywhere (every `/api` in the log); a query, where tokens
    # go, and a password are, whatever their length.
    if at and len(login) >= _PART_MIN:
        found.add(login)
    if password:
        found.add(password)
    if len(parts.path.strip("/")) >= _PART_MIN:
        found.add(parts.path)
    if parts.query:
        found |= {parts.query, f"{parts.path}?{parts.query}"}
    if len(parts.fragment) >= _PART_MIN:
        found.add(parts.fragment)
    return found | {urllib.parse.unquote(part) for part in found}


_PART_MIN: Final = 8  # characters a secret URL's login, path or fragment needs to be masked alone


def _leak_forms(value: str) -> tuple[set[str], set[str]]:
    """The forms of ``value`` as written and escaped; and as hex and base64."""
    bases = {value, value.strip()} | {line.strip() for line in value.splitlines()}
    once = {escape(base) for base in bases for escape in _ESCAPES}
    twice = {outer(form) for form in once for outer in _OUTER}
    once |= {escape(base) for base in bases for escape in _FOREIGN}
    encoded = {form for base in bases for form in _encoded(base)}
    return bases | once | twice | {printable(form) for form in bases | once}, encoded
