"""Secrets never leak, whatever quoting carries them; control characters never reach a terminal.

The masker is tested as a plain function over every escaping a value can
pass through, then end to end: a real ``python cli.py run`` and a real
daemon whose argv holds secrets with quotes, backslashes, newlines and
non-ASCII text, checked in the log, ``run --json``, the journal and
``status``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shlex
import signal
import time
import urllib.parse
from pathlib import Path

import pytest
from test_cli import jobvisor, write
from test_daemon import Running, start_daemon, stop_daemon

from actors import Attempt, CommandFailed, CommandWork
from supervision._secrets import SecretMasker, printable, printable_json

# Each one breaks a naive masker in its own way.
HARD = (
    "it's-secret",  # shell quoting rewrites the quote
    'say "hi" now',  # JSON and repr escape the double quotes
    "back\\slash\\path",  # every escaping doubles the backslash
    "line-one\nline-two",  # repr and JSON write \n; the text log indents it
    "pässwörd-ключ-密码",  # ascii() and JSON write \\u escapes
    "both'and\"quotes",  # repr must escape one of the quotes
)
SHORT_IN_LONG = ("token-abcd", "token-abcd-and-more")  # one is a part of the other


def escapings(value: str) -> dict[str, str]:
    """Every way a value reaches a line: alone and inside a longer argv word or document."""
    word = f"--key={value} tail"
    quoted = shlex.join(["sh", "-c", "exit 3", value, word])
    return {
        "raw": value,
        "shlex": quoted,
        "repr": repr(word),
        "repr-of-both": repr(word + "'\""),
        "ascii": ascii(word),
        "json": json.dumps(word),
        "json-unicode": json.dumps(word, ensure_ascii=False),
        "json-of-shlex": json.dumps(quoted),
        "json-of-shlex-unicode": json.dumps(quoted, ensure_ascii=False),
        "repr-of-shlex": repr(quoted),
        "url": urllib.parse.quote(word, safe=""),
        "url-plus": urllib.parse.quote_plus(word, safe=""),
    }


def pieces(value: str) -> list[str]:
    """The parts of a value that must not show: itself and each of its lines."""
    return [value, *(line for line in value.splitlines() if len(line) >= 4)]


@pytest.mark.parametrize("value", HARD)
def test_every_escaped_form_of_a_secret_is_masked(value: str) -> None:
    masker = SecretMasker([value])
    for how, text in escapings(value).items():
        masked = masker.mask(text)
        assert "***" in masked, how
        for piece in pieces(value):
            assert piece not in masked, how
        # what the masker left is the surrounding text, escaped the same way
        assert "tail" in masked or how in ("raw", "url", "url-plus"), how


ENCODED = ("AbC/dEf+GhIjK==", "pässwörd/&<\"x>'y z")  # a base64-style key; every escape's mark


def encodings(value: str) -> dict[str, str]:
    """The ways a value is written that a trial found in clear: a path's URL quoting, lower
    case percent escapes, a bytes repr, HTML, ``unicode_escape``, hex and base64 (alone, and
    inside a Basic authorization at each of the three places a value can start in it)."""
    data = value.encode()
    found = {
        "url-path": urllib.parse.quote(value),
        "url-lower": re.sub(r"%[0-9A-F]{2}", lambda hit: hit[0].lower(), urllib.parse.quote(value)),
        "bytes": repr(data),
        "bytes-of-both": repr(data + b"'\""),
        "html": "<p>" + __import__("html").escape(value) + "</p>",
        "html-text": __import__("html").escape(value, quote=False),
        "unicode-escape": value.encode("unicode_escape").decode(),
        "hex": data.hex(),
        "HEX": data.hex().upper(),
        "base64": base64.b64encode(data).decode(),
        "base64-url": base64.urlsafe_b64encode(b"x" + data).decode(),
    }
    for login in ("u", "us", "use"):
        found[f"basic-{login}"] = "Basic " + base64.b64encode(f"{login}:".encode() + data).decode()
    return found


@pytest.mark.parametrize("value", ENCODED)
def test_every_encoded_form_of_a_secret_is_masked(value: str) -> None:
    masker = SecretMasker([value])
    for how, text in encodings(value).items():
        line = f"failed: RuntimeError: {text} tail"
        masked = masker.mask(line)
        assert "***" in masked, how
        assert text not in masked, how
        assert masked.startswith("failed: RuntimeError: "), how
        assert masked.endswith(" tail"), how
    # Base64 of another value is left alone: only the runs made of the secret's own bits go.
    other = base64.b64encode(b"u:another-value-entirely").decode()
    assert masker.mask(other) == other


FOREIGN = ("k3y/with&amp<x>", "p@ss w0rd/é\"'<&>+%zz")  # every mark those encoders escape


def _json_hex(document: str, chars: str, upper: bool = False) -> str:
    """``document`` (JSON) with each of ``chars`` written as a ``\\u`` escape, as an encoder
    that makes JSON safe inside HTML does (a ``"`` is escaped already: its ``\\"`` goes)."""
    for char in chars:
        code = f"\\u{ord(char):04X}" if upper else f"\\u{ord(char):04x}"
        document = document.replace('\\"' if char == '"' else char, code)
    return document


def foreign_forms(value: str) -> dict[str, str]:
    """A value as other languages' encoders write it, which a security audit found in clear:
    Go's ``encoding/json``, PHP's ``json_encode`` (default, with ``JSON_UNESCAPED_UNICODE``,
    with ``JSON_HEX_*`` as Laravel's ``@json``), upper-case ``\\u`` hex, every byte
    percent-encoded (in either case or both), JavaScript's ``encodeURIComponent``, and
    the quote entities of XML, PHP, Ruby and Go's ``html``. The same bytes those encoders
    give: ``json.dumps``, then the replacements each one makes."""
    plain, wide = json.dumps(value), json.dumps(value, ensure_ascii=False)
    every = [f"%{byte:02X}" for byte in value.encode()]
    return {
        "go": _json_hex(wide, "<>&"),
        "json-html-safe": _json_hex(plain, "<>&"),
        "php": plain.replace("/", "\\/"),
        "php-unescaped-unicode": wide.replace("/", "\\/"),
        "php-hex-flags": _json_hex(plain.replace("/", "\\/"), "<>&'\"", upper=True),
        "json-upper-hex": re.sub(r"\\u[0-9a-f]{4}", lambda hit: "\\u" + hit[0][2:].upper(), plain),
        "percent-every-byte": "".join(every),
        "percent-every-byte-lower": "".join(every).lower(),
        "percent-mixed-case": "".join(e if n % 2 else e.lower() for n, e in enumerate(every)),
        "url-mixed-case": re.sub(
            r"%[0-9A-F]{2}(%[0-9A-F]{2})?",
            lambda hit: hit[0][:3].lower() + hit[0][3:],
            urllib.parse.quote(value, safe=""),
        ),
        "encode-uri-component": urllib.parse.quote(value, safe="!'()*"),
        "xml": html.escape(value).replace("&#x27;", "&apos;"),
        "html-decimal": html.escape(value).replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
        "php-htmlspecialchars": html.escape(value).replace("&#x27;", "&#039;"),
        "ruby-escape-html": html.escape(value).replace("&#x27;", "&#39;"),
    }


@pytest.mark.parametrize("value", FOREIGN)
def test_other_languages_encodings_of_a_secret_are_masked(value: str) -> None:
    masker = SecretMasker([value])
    forms = foreign_forms(value)
    if value == FOREIGN[0]:  # as the audit saw them
        assert forms["go"] == '"k3y/with\\u0026amp\\u003cx\\u003e"'
        assert forms["php"] == '"k3y\\/with&amp<x>"'
    for how, text in forms.items():
        masked = masker.mask(f"failed: {text} tail")
        shown = '"***"' if text.startswith('"') else "***"
        assert masked == f"failed: {shown} tail", how


def test_case_blind_escapes_mask_only_the_secret() -> None:
    """Hex is matched in either case inside an escape; text that is not the secret, however
    close, is left alone."""
    masker = SecretMasker(["k3y/with&amp<x>", "p@ss w0rd/é"])
    for text in (
        "%6B%33%79%2F%77%69%74%68",  # the secret's beginning, every byte encoded
        "k3y%2Fwith%26amp%3Cy%3E",  # one character other
        "p@ss w0rd/\\u00E8",
        "\\u003cx\\u003E %2f%2F &apos;&#39;",
        "6b33792f776974682661",  # its hex, cut short
    ):
        assert masker.mask(text) == text, text


def test_digits_and_letters_beside_a_clip_mark_are_not_taken_for_an_encoded_secret() -> None:
    """A clip mark's neighbour is masked when it could be a cut piece of a secret, as written
    or escaped; hex and base64 forms start and end with any digit or letter, so with them
    "status 537..." lost its number (review r49)."""
    masker = SecretMasker(["Sup3rSecret"])
    for text in (
        "error at line 5... (1,234 more characters)",
        "status 537... (9 more characters)",
        "(9 more characters) ...574 done",
    ):
        assert masker.mask(text) == text
    # A cut piece of the secret as written is still masked there.
    assert masker.mask("token Sup3rSe... (9 more characters)") == "token ***... (9 more characters)"


def test_a_piece_of_an_escaped_secret_beside_a_clip_mark_is_masked_in_either_hex_case() -> None:
    """The pattern matches hex escapes in either case, the clip mark's look took them as
    written: a lower-case %2f piece cut by a clip mark showed (r54)."""
    masker = SecretMasker(["s3cr3t/p@ss+word=xyz/qq", "k3y/with&amp<x>"])
    for piece in (
        "s3cr3t%2Fp%40s",
        "s3cr3t%2fp%40s",
        "k3y/with\\u0026amp\\u003C",  # Go's encoding/json, its hex as some write it
        "k3y/with\\u0026amp\\u003c",
    ):
        said = masker.mask(f"GET /?tok={piece}... (18 more characters)")
        assert said == "GET /?tok=***... (18 more characters)", said


def test_forms_that_begin_alike_are_each_masked_to_their_longest() -> None:
    """The forms are matched as a trie: at each place the longest form that starts there."""
    masker = SecretMasker(["token-abcd", "token-abcdef", "token-abXY"])
    said = masker.mask("token-abcdefg token-abcdz token-abXYZ token-ab")
    assert said == "***g ***z ***Z token-ab"


def test_forms_nested_too_deep_for_a_trie_are_matched_one_by_one() -> None:
    """Each form the start of the next, a thousand deep: ``re`` cannot nest so many groups,
    and the plain alternation, longest first, is used."""
    import re

    from supervision._secrets import _alternatives

    forms = sorted({"x" * n for n in range(4, 1100)})
    found = re.compile(_alternatives(forms)).search("a " + "x" * 1200)
    assert found is not None
    assert found.group() == "x" * 1099


def test_the_shell_quoted_form_keeps_the_quotes_around_the_mask() -> None:
    masker = SecretMasker(["it's-secret"])
    assert masker.mask(shlex.join(["sh", "-c", "exit 3", "it's-secret"])) == "sh -c 'exit 3' '***'"


def test_a_secret_inside_another_leaves_no_piece_of_either() -> None:
    short, long = SHORT_IN_LONG
    for masker in (SecretMasker([short, long]), SecretMasker([long, short])):
        assert masker.mask(f"a {long} b {short} c") == "a *** b *** c"
        assert masker.mask(json.dumps(f"x{long}")) == '"x***"'


def test_overlapping_secrets_are_masked_as_one_stretch() -> None:
    masker = SecretMasker(["alpha-beta", "beta-gamma"])
    assert masker.mask("<alpha-beta-gamma>") == "<***>"


def test_a_cut_of_a_long_line_never_falls_inside_a_secret() -> None:
    # A command's line longer than 64 KiB is logged in parts, each masked on its own: a cut
    # inside a secret would leave both halves in clear. safe_cut moves it to the secret's start.
    masker = SecretMasker(["hunter2-XyZ"])
    assert masker.longest == max(len(f.encode()) for f in masker._forms)
    data = b"A" * 20 + b"hunter2-XyZ" + b"B" * 20
    assert masker.safe_cut(data, 25) == 20  # inside: before it
    assert masker.safe_cut(data, 20) == 20  # at its start already
    assert masker.safe_cut(data, 31) == 31  # at its end
    assert masker.safe_cut(data, 10) == 10  # nowhere near
    # Overlapping secrets are one stretch: the cut goes before both.
    both = SecretMasker(["abcdefgh", "efghijkl"])
    assert both.safe_cut(b"xx" + b"abcdefghijkl" + b"yy", 9) == 2
    # A secret that begins the data cannot go before it: the cut goes after it instead.
    assert masker.safe_cut(b"hunter2-XyZ" + b"B" * 5, 4) == 11
    # Bytes that are no UTF-8 and multibyte text around it change nothing.
    odd = "\u00e9".encode() + b"\xff" + b"hunter2-XyZ"
    assert masker.safe_cut(odd, len(odd) - 3) == 3
    # No secret: no cost and no move.
    assert SecretMasker().longest == 0
    assert SecretMasker().safe_cut(data, 25) == 25


def test_printable_escapes_terminal_controls_and_keeps_what_is_asked() -> None:
    hostile = "ok\x1b[31mred\x1b]0;title\x07\x00nul\x9bcsi\u202eevil\r\tend\n"
    shown = printable(hostile)
    assert shown == "ok\\x1b[31mred\\x1b]0;title\\x07\\x00nul\\x9bcsi\\u202eevil\\x0d\tend\\x0a"
    assert printable(hostile, keep="\t\n").endswith("\tend\n")
    assert printable("plain ünïcode 密码") == "plain ünïcode 密码"
    document = json.dumps({"line": hostile}, ensure_ascii=False)
    safe = printable_json(document)
    assert json.loads(safe) == {"line": hostile}
    assert "\x9b" not in safe
    assert "\u202e" not in safe


SECRETS = {f"S{n}": value for n, value in enumerate(HARD + SHORT_IN_LONG)}


def argv_manifest(tmp_path: Path, *, log: str = "") -> Path:
    argv = ", ".join(f"{{secret: {{env: {name}}}}}" for name in SECRETS)
    return write(
        tmp_path,
        f"""
        version: 1
        {log}
        supervisor: {{intensity: {{max_restarts: 0}}}}
        jobs:
          - name: leak
            command: [sh, -c, "exit 3", {argv}]
        """,
    )


def assert_no_secret(text: str, where: str) -> None:
    for value in SECRETS.values():
        for form in escapings(value).values():
            for piece in pieces(form):
                assert piece not in text, f"{where} shows a secret"


def test_secrets_in_argv_never_reach_the_log_the_json_or_the_journal(tmp_path: Path) -> None:
    argv_manifest(tmp_path, log="logging: {level: verbose, file: jv.jsonl, format: json}")
    text_run = jobvisor("run", "--json", "--log-file", "-", cwd=tmp_path, env=SECRETS)
    assert text_run.returncode == 1, text_run.stderr
    assert "failed (attempt 1): command sh -c 'exit 3' '***'" in text_run.stderr
    json_run = jobvisor("run", "--json", cwd=tmp_path, env=SECRETS)
    assert json_run.returncode == 1, json_run.stderr
    error = json.loads(json_run.stdout)["children"][0]["last_exit"]["error"]
    assert error.startswith("command sh -c 'exit 3' '***'")
    history = jobvisor("history", "--json", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    assert any(row.get("error") for row in json.loads(history.stdout))
    logged = (tmp_path / "jv.jsonl").read_text(encoding="utf-8")
    assert "***" in logged
    journal = b"".join(p.read_bytes() for p in (tmp_path / ".jobvisor").glob("journal.sqlite3*"))
    for where, text in (
        ("the text log", text_run.stderr),
        ("run --json", text_run.stdout + json_run.stdout),
        ("the JSON log", logged),
        ("history", history.stdout),
        ("the journal file", journal.decode("utf-8", "replace")),
    ):
        assert_no_secret(text, where)


def test_secrets_in_argv_never_reach_the_daemon_status(tmp_path: Path) -> None:
    argv = ", ".join(f"{{secret: {{env: {name}}}}}" for name in SECRETS)
    running = start_daemon(
        tmp_path,
        f"""
        version: 1
        supervisor: {{intensity: {{max_restarts: 0}}}}
        jobs:
          - name: leak
            command: [sh, -c, "exit 3", {argv}]
        """,
        env_extra=SECRETS,
    )
    try:
        deadline = time.monotonic() + 20
        while (node := running.nodes()["leak"])["last_exit"] is None:
            assert time.monotonic() < deadline, "the job never ended"
        table = running.cli("status")
    finally:
        stderr = stop_daemon_output(running)
    assert node["last_exit"]["error"].startswith("command sh -c 'exit 3' '***'")
    assert_no_secret(json.dumps(node), "status --json")
    assert_no_secret(table.stdout, "status")
    assert_no_secret(stderr, "the daemon's log")


def test_a_secret_cut_by_a_clipped_message_or_traceback_is_masked_to_the_cut() -> None:
    """A python job's message past 8 KiB (and its traceback past its bound) is clipped where it
    is made, before the tree masks it: a secret straddling the clip showed its start, 20 of
    36 characters (review r48). Its piece next to the clip is masked too."""
    from actors._python_call import MESSAGE_MAX, clip_head, clip_tail

    value = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    masker = SecretMasker([value])
    for keep in (1, 4, 20, 35):
        head = masker.mask(clip_head("x" * (MESSAGE_MAX - keep) + value + " tail"))
        assert value[:keep] not in head, head[-80:]
        assert head.endswith("x***... (" + f"{len(value) - keep + 5} more characters)"), head[-60:]
        tail = masker.mask(clip_tail("head " + value + "y" * (4096 - keep), 4096))
        assert value[-keep:] not in tail, tail[:80]
        assert "more characters) ...***y" in tail, tail[:80]
    plain = masker.mask(clip_head("x" * MESSAGE_MAX + "tail"))  # nothing secret: left alone
    assert plain.endswith("xxx... (4 more characters)")


@pytest.mark.parametrize("value", ["ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "it's-ключ-密码-secret"])
def test_a_long_commands_error_is_never_cut_inside_a_secret(value: str) -> None:
    """An error shows the first 200 characters of a command, and is masked whole later: a cut
    inside a secret left its start in clear, no longer the secret the masker knows (31 of 36
    characters, found by trying it). The cut is moved off the secret, wherever it falls."""
    masker = SecretMasker([value])
    seen = set()
    for pad in range(120, 200):
        work = CommandWork(argv=("sh", "-c", "exit 7", "x" * pad, value, "tail"))
        with pytest.raises(CommandFailed) as failed:
            work.run(Attempt("cut", 1, time.time(), cut=masker))
        shown = masker.mask(str(failed.value))
        seen.add("***" in shown)
        assert shown.endswith(" exited with 7"), shown
        assert len(shown) <= len("command ") + 200 + len(" exited with 7"), shown
        quoted = shlex.quote(value)  # as the command shows it
        for n in range(SecretMasker.MIN_LENGTH, len(quoted) + 1):
            assert value[:n] not in shown, (pad, shown)
            assert n < 6 or quoted[:n] not in shown, (pad, shown)
    assert seen == {True, False}, "the whole secret shown (masked), and the cut before it"


@pytest.mark.parametrize("value", ["it's-a-p4ss-w0rd", "both'and\"quotes", "back\\slash\\path"])
def test_a_secret_beside_a_plain_value_is_masked_alone_and_the_plain_value_shows(
    tmp_path: Path, value: str
) -> None:
    """``${PLAIN}${secret:SEC}`` and ``x${secret:SEC}y``: the log, ``run --json`` and a
    manifest error show ``plain-value***`` and ``x***y``, the plain value in clear, and no
    piece of the secret in any quoting (a word's quoting starts before the secret)."""
    env = {"PLAIN": "plain-value", "SEC": value}
    write(
        tmp_path,
        """
        version: 1
        supervisor: {intensity: {max_restarts: 0}}
        jobs:
          - name: argv
            command: [sh, -c, 'echo "out=$V"; exit 3', x, "${PLAIN}${secret:SEC}"]
            env: {V: "x${secret:SEC}y"}
          - name: py
            python: "builtins:int"
            args: ["${PLAIN}${secret:SEC}"]
        """,
    )
    out = jobvisor("run", "--json", cwd=tmp_path, env=env)
    assert out.returncode == 1, out.stderr
    assert "argv[1] out=x***y [path=argv" in out.stderr
    errors = {n["path"]: n["last_exit"]["error"] for n in json.loads(out.stdout)["children"]}
    assert errors["argv"].startswith("command sh -c "), errors
    assert errors["argv"].endswith(" x 'plain-value***' exited with 3"), errors
    assert errors["py"].startswith("ValueError: invalid literal for int() with base 10: ")
    assert errors["py"][-15:-1] == "plain-value***", errors
    (tmp_path / "bad.yaml").write_text(
        'version: 1\njobs:\n  - {name: t, command: ["true"], every: "x${secret:SEC}${PLAIN}"}\n'
    )
    bad = jobvisor("validate", "bad.yaml", cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert bad.stderr.rstrip().endswith(("got 'x***plain-value'", 'got "x***plain-value"'))
    for where, text in (
        ("the log", out.stderr),
        ("run --json", out.stdout),
        ("validate", bad.stderr),
    ):
        for form in escapings(value).values():
            for piece in pieces(form):
                assert piece not in text, f"{where} shows a secret"
        # no part of it either ("and" or "path" alone are every line's words)
        assert not [value[i : i + 6] for i in range(len(value) - 5) if value[i : i + 6] in text]


def test_other_languages_encodings_of_a_secret_are_masked_in_a_jobs_output_and_log(
    tmp_path: Path,
) -> None:
    """A real command prints the secret as Go, PHP, a percent-encoder and XML write it: the
    job's output file and jobvisor's log show each line with the secret's part ``***``."""
    value = FOREIGN[1]
    forms = foreign_forms(value)
    (tmp_path / "forms.txt").write_text("".join(f"{how}={text};\n" for how, text in forms.items()))
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - name: leak
            command: [cat, forms.txt]
            env: {SEC: {secret: {env: SEC}}}
        """,
    )
    out = jobvisor("run", "--log-file", "jv.log", cwd=tmp_path, env={"SEC": value})
    assert out.returncode == 0, out.stderr
    written = (tmp_path / ".jobvisor" / "output" / "leak.log").read_text(encoding="utf-8")
    logged = (tmp_path / "jv.log").read_text(encoding="utf-8")
    for how, text in forms.items():
        shown = '"***"' if text.startswith('"') else "***"
        assert f" {how}={shown};\n" in written, how
        assert f" {how}={shown}; [path=leak" in logged, how
    for where in (written, logged):
        assert not [value[i : i + 6] for i in range(len(value) - 5) if value[i : i + 6] in where]
        assert "%70%40" not in where.upper()
        assert "\\/" not in where
        assert "\\u003" not in where.lower()


def stop_daemon_output(running: Running) -> str:
    """Stop the daemon gracefully; return what it logged."""
    running.proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = running.proc.communicate(timeout=30)
    finally:
        stop_daemon(running)  # kills it if it did not stop, and closes its notify socket
    assert running.proc.returncode == 0, stderr
    return stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_jobs_control_characters_never_reach_the_log(tmp_path: Path, fmt: str) -> None:
    write(
        tmp_path,
        f"""
        version: 1
        logging: {{level: information, format: {fmt}}}
        jobs:
          - name: noisy
            command: [printf, "a\\\\033[31mred\\\\033]0;pwned\\\\007\\\\000nul\\\\302\\\\233csi\\\\r|\\\\n"]
        """,
    )
    out = jobvisor("run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for control in ("\x1b", "\x07", "\x00", "\x9b", "\r"):
        assert control not in out.stderr
    lines = [line for line in out.stderr.splitlines() if "pwned" in line]
    assert len(lines) == 1, out.stderr
    if fmt == "text":
        assert "a\\x1b[31mred\\x1b]0;pwned\\x07\\x00nul\\x9bcsi\\x0d|" in lines[0]
    else:
        assert json.loads(lines[0])["message"].endswith(
            "a\x1b[31mred\x1b]0;pwned\x07\x00nul\x9bcsi\r|"
        )


def test_explain_masks_secrets_in_argv(tmp_path: Path) -> None:
    argv_manifest(tmp_path)
    out = jobvisor("validate", "--explain", cwd=tmp_path, env=SECRETS)
    assert out.returncode == 0, out.stderr
    assert "command sh -c 'exit 3' '***'" in out.stdout
    assert_no_secret(out.stdout + out.stderr, "validate --explain")


def test_a_secret_inside_a_url_is_sent_as_written_and_never_shown_in_part(tmp_path: Path) -> None:
    """A secret with a URL's own characters in it (``@``, ``/``, ``&``, a space) is encoded
    where it stands: the request goes to the host written, with the whole secret as its
    password and query value, and no piece of it shows (the trial saw ``***@cd/x``, and the
    request went to host ``cd``)."""
    from httpkit import HttpKit, Reply

    password, token = "ab@cd/x", "p@ss word+/&k=v"
    with HttpKit() as kit:
        kit.script(Reply(500))
        write(
            tmp_path,
            f"""
            version: 1
            supervisor: {{intensity: {{max_restarts: 0}}}}
            jobs:
              - name: api
                http: {{url: "http://user:${{secret:PW}}@127.0.0.1:{kit.port}/x?k=${{secret:TOK}}"}}
            """,
        )
        out = jobvisor("run", "--json", cwd=tmp_path, env={"PW": password, "TOK": token})
        [request] = kit.wait_requests(1)
    assert out.returncode == 1, out.stderr
    assert request.path.startswith("/x")
    assert request.query == {"k": [token]}
    basic = base64.b64decode(request.headers["authorization"].removeprefix("Basic "))
    assert basic.decode() == f"user:{password}"
    error = json.loads(out.stdout)["children"][0]["last_exit"]["error"]
    assert f"http://user:***@127.0.0.1:{kit.port}/x?k=***" in error, error
    for text in (out.stdout, out.stderr):
        # whole, in part (what the trial saw), and in part encoded
        for piece in (password, token, "cd/x", "ss word", "&k=v", "cd%2Fx", "ss%20word"):
            assert piece not in text, text


def test_a_url_that_begins_with_a_secret_takes_it_as_written() -> None:
    """A secret holding a URL's beginning (a webhook, a base URL with its password) keeps its
    scheme and host: encoded, the URL was refused as not http:// ('***/x')."""
    from supervision import load_manifest

    text = """
version: 1
jobs:
  - name: api
    http: {url: "${secret:BASE}/v1/ping?k=${secret:TOK}"}
"""
    env = {"BASE": "http://user:pa55word@127.0.0.1:9", "TOK": "p@ss word"}
    manifest = load_manifest(text, env=env)
    [job] = manifest.root.children
    assert job.work.url == "http://user:pa55word@127.0.0.1:9/v1/ping?k=p%40ss%20word"


@pytest.mark.parametrize(
    ("url", "env", "sent"),
    [
        # a whole login: its ":" still splits user from password; its "@" is encoded
        (
            "http://${secret:CREDS}@127.0.0.1:9/x",
            {"CREDS": "user:pa@55"},
            "http://user:pa%4055@127.0.0.1:9/x",
        ),
        # a password alone, with a ":" and a "/" in it
        (
            "http://user:${secret:PW}@127.0.0.1:9/x",
            {"PW": "a:b/c"},
            "http://user:a:b%2Fc@127.0.0.1:9/x",
        ),
        # the host (and port) as a secret: as written
        ("http://${secret:HOSTPORT}/x", {"HOSTPORT": "127.0.0.1:8080"}, "http://127.0.0.1:8080/x"),
        ("http://u:p@${secret:HOST}:9/x", {"HOST": "127.0.0.1"}, "http://u:p@127.0.0.1:9/x"),
        # a path segment and a query value: encoded whole
        (
            "http://h:9/a/${secret:SEG}?k=${secret:V}#f",
            {"SEG": "x/y", "V": "1&2"},
            "http://h:9/a/x%2Fy?k=1%262#f",
        ),
    ],
)
def test_a_secret_in_a_url_is_encoded_for_the_part_it_stands_in(
    url: str, env: dict[str, str], sent: str
) -> None:
    from supervision import load_manifest

    text = f'version: 1\njobs:\n  - name: api\n    http: {{url: "{url}"}}\n'
    manifest = load_manifest(text, env=env)
    [job] = manifest.root.children
    assert job.work.url == sent
    masker = SecretMasker(manifest.secrets)
    for value in env.values():
        if value not in ("127.0.0.1", "127.0.0.1:8080"):  # hosts: too common to be secret here
            assert value not in masker.mask(sent), sent
    if "CREDS" in env:  # the login as it was encoded, ":" kept
        assert masker.mask(f"GET {sent}") == "GET http://***@127.0.0.1:9/x"
    if "PW" in env:
        assert masker.mask(f"GET {sent}") == "GET http://user:***@127.0.0.1:9/x"


@pytest.mark.parametrize(
    "written",
    [
        "{secret: {env: URL}}",
        '"${secret:URL}"',
    ],
    ids=["whole-secret", "interpolated-whole"],
)
@pytest.mark.parametrize("where", ["job", "notifier"])
def test_a_url_given_as_a_secret_has_each_of_its_parts_masked_on_their_own(
    written: str, where: str
) -> None:
    """The trial's finding: a notifier's error quoted only the request's path and query
    ('/hook?key=...'), which masking the whole URL missed. A URL that is a secret, or
    begins with one, has its login, password, path and query masked wherever they show."""
    from supervision import load_manifest

    url = "http://user:pa55word@127.0.0.1:9/hook/T0K3N?key=s3cr3tKEY"
    if where == "job":
        text = f"version: 1\njobs:\n  - name: api\n    http: {{url: {written}}}\n"
    else:
        text = (
            f"version: 1\nnotify:\n  - {{on: [failed], http: {{url: {written}}}}}\n"
            "jobs:\n  - {name: j, command: [x]}\n"
        )
    manifest = load_manifest(text, env={"URL": url})
    masker = SecretMasker(manifest.secrets)
    for shown in (
        "InvalidURL: URL can't contain control characters. '/hook/T0K3N?key=s3cr3tKEY'",
        "Max retries exceeded with url: /hook/T0K3N?key=s3cr3tKEY (Caused by ...)",
        "POST /hook/T0K3N failed",
        "key=s3cr3tKEY",
        "login user:pa55word",
        "password pa55word",
        repr("/hook/T0K3N?key=s3cr3tKEY"),
    ):
        masked = masker.mask(shown)
        for piece in ("T0K3N", "s3cr3tKEY", "pa55word"):
            assert piece not in masked, (shown, masked)


def test_a_url_beginning_with_a_secret_has_the_secrets_parts_masked_on_their_own() -> None:
    from supervision import load_manifest

    text = 'version: 1\njobs:\n  - name: api\n    http: {url: "${secret:BASE}/v1?k=1"}\n'
    manifest = load_manifest(text, env={"BASE": "http://127.0.0.1:9/hooks/T0K3N"})
    masker = SecretMasker(manifest.secrets)
    assert "T0K3N" not in masker.mask("url: /hooks/T0K3N/v1?k=1")
    # The host is not a secret of its own: it shows in every connection error.
    assert masker.mask("connect to 127.0.0.1:9 refused") == "connect to 127.0.0.1:9 refused"


def test_a_secret_urls_short_parts_are_not_secrets_of_their_own() -> None:
    """Masked alone, a secret URL's `/api` or login `bob` hid every `/api` and `bob` in the log
    (review); its password and its query, where tokens go, are masked whatever their length."""
    from supervision._secrets import url_parts

    found = url_parts("https://bob:pw@api.example/api?k=1#top")
    assert {"pw", "k=1", "/api?k=1"} <= found
    assert not {"bob", "/api", "top"} & found
    long = url_parts("https://deployer:pw@h/hooks/T000/B000#fragment1")
    assert {"deployer:pw", "/hooks/T000/B000", "fragment1"} <= long


NOBODY = 65534  # another user, as tests/test_files.py plays one
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="plays a second user with chown")


@needs_root
def test_a_secret_file_another_user_owns_or_may_write_is_refused(tmp_path: Path) -> None:
    """A token file planted by another user was taken silently, as the HTTP token too: its
    planter knew the token that allows every action (review). An env file was refused."""
    planted = tmp_path / "planted"
    planted.write_text("planted-token-4f7e\n")
    planted.chmod(0o600)
    os.chown(planted, NOBODY, NOBODY)
    shared = tmp_path / "shared"
    shared.write_text("shared-password-9c2d\n")
    shared.chmod(0o666)
    write(
        tmp_path,
        """
        version: 1
        http: {token: {secret: {file: planted}}}
        jobs:
          - name: a
            command: [sh, -c, "true"]
            env: {PW: {secret: {file: shared}}}
        """,
    )
    out = jobvisor("validate", cwd=tmp_path, env={})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if not line.startswith("warning: ")]
    assert errors == [
        (
            f"jobs.yaml:3: http.token.secret.file: refusing the secret file '{planted}': it is "
            "owned by uid 65534, who could have chosen the secret and can change it; chown it to "
            "root or to the user that runs jobvisor"
        ),
        (
            f"jobs.yaml:7: jobs[0].env.PW.secret.file: refusing the secret file '{shared}': it is "
            "writable by others (mode 0666), who could have chosen the secret and can change it; "
            "chmod o-w it"
        ),
    ]
    assert "planted-token" not in out.stderr
    assert "shared-password" not in out.stderr
    run = jobvisor("run", cwd=tmp_path, env={})
    assert run.returncode == 2, run.stderr
    assert f"refusing the secret file '{planted}'" in run.stderr
    os.chown(planted, 0, 0)  # root's (or jobvisor's own user's) is taken
    shared.chmod(0o600)
    assert jobvisor("validate", cwd=tmp_path, env={}).returncode == 0


@needs_root
def test_a_secret_file_through_another_users_symlink_is_refused(tmp_path: Path) -> None:
    """A link another user planted, to a root file whose text they know, passed the owner
    check (it looked at the file pointed to): its text became the HTTP token (review 39a)."""
    known = tmp_path / "known"
    known.write_text("text-everyone-knows-7a1\n")
    known.chmod(0o600)
    link = tmp_path / "tok"
    link.symlink_to(known)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    write(
        tmp_path,
        """
        version: 1
        http: {token: {secret: {file: tok}}}
        jobs:
          - name: a
            command: [sh, -c, "true"]
        """,
    )
    out = jobvisor("validate", cwd=tmp_path, env={})
    assert out.returncode == 2, out.stderr
    assert (
        f"refusing the secret file '{link}': it is a symbolic link owned by uid 65534, who "
        "chose the file it points to; name the file itself"
    ) in out.stderr
    os.chown(link, 0, 0, follow_symlinks=False)  # root's own link is followed
    assert jobvisor("validate", cwd=tmp_path, env={}).returncode == 0


@needs_root
def test_a_secret_file_through_another_users_link_anywhere_on_its_path_is_refused(
    tmp_path: Path,
) -> None:
    """Only the last component was looked at, with one lstat (review 40): my own link to
    another user's link to a root file, or a file under another user's link to a directory,
    was taken, its text the HTTP token."""
    known = tmp_path / "known"
    known.write_text("text-everyone-knows-7a1\n")
    known.chmod(0o600)
    direct = tmp_path / "direct"
    direct.symlink_to(known)
    os.chown(direct, NOBODY, NOBODY, follow_symlinks=False)
    (tmp_path / "mine").symlink_to("direct")  # root's: a link we trust, to one we do not
    realdir = tmp_path / "realdir"
    realdir.mkdir()
    (realdir / "tok").write_text("text-everyone-knows-7a1\n")
    (realdir / "tok").chmod(0o600)
    viadir = tmp_path / "viadir"
    viadir.symlink_to(realdir)
    os.chown(viadir, NOBODY, NOBODY, follow_symlinks=False)
    manifest = """
        version: 1
        http: {token: {secret: {file: NAME}}}
        jobs:
          - name: a
            command: [sh, -c, "true"]
        """
    for name, link in (("mine", direct), ("viadir/tok", viadir), ("./viadir/../mine", viadir)):
        write(tmp_path, manifest.replace("NAME", name))
        out = jobvisor("validate", cwd=tmp_path, env={})
        assert out.returncode == 2, (name, out.stderr)
        assert (
            f"refusing the secret file '{tmp_path / name}': the symbolic link '{link}' on its "
            "path is owned by uid 65534, who chose where it points; name the file itself"
        ) in out.stderr, name
        assert "everyone-knows" not in out.stderr
    os.chown(direct, 0, 0, follow_symlinks=False)  # root's links, and our own, are followed
    os.chown(viadir, os.geteuid(), os.getegid(), follow_symlinks=False)
    for name in ("mine", "viadir/tok", "./viadir/../mine"):
        write(tmp_path, manifest.replace("NAME", name))
        out = jobvisor("validate", cwd=tmp_path, env={})
        assert out.returncode == 0, (name, out.stderr)


def test_a_path_through_root_s_and_our_own_links_is_followed(tmp_path: Path) -> None:
    """The walk refuses only links of other users: /tmp, a link we own to our own file, a
    relative link climbing out with '..', and a link to a link to a directory are fine."""
    from supervision._envfile import planted_link

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "up").symlink_to("../d")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to(tmp_path / "d")
    for path in ("d/f", "a/f", "a/up/up/f", "d/up/../d/f", "missing/f", "d/f/not-a-dir"):
        assert planted_link(tmp_path / path) is None, path
    (tmp_path / "loop").symlink_to("loop")
    assert planted_link(tmp_path / "loop" / "f") is None  # the open says ELOOP
    assert planted_link("/tmp") is None


def test_a_secret_too_short_to_mask_is_warned_of_once_naming_its_place(tmp_path: Path) -> None:
    """``TK=ab PW=xyz jobvisor run`` logged ``pw=xyz tk=ab`` and said nothing (review): the
    masker skips what is shorter than 4 characters, as for an env file's value, which warns."""
    write(
        tmp_path,
        """
        version: 1
        http: {listen: "127.0.0.1:0", token: {secret: {env: TK}}}
        jobs:
          - name: a
            command: [sh, -c, "echo pw=$PW"]
            env:
              PW: {secret: {env: PW}}
              AGAIN: "--pw=${secret:PW}"
        """,
    )
    env = {"TK": "ab", "PW": "xyz"}  # as the review ran it: "ab" is in "variable", too
    for args in (("validate",), ("run",)):
        out = jobvisor(*args, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        short = [line for line in out.stderr.splitlines() if "too short to mask" in line]
        assert short == [
            (
                "warning: jobs.yaml:3: http.token.secret.env: the secret in environment variable TK "
                "has fewer than 4 characters: too short to mask (masked, it would hide that text in "
                "every line), so it shows in clear wherever it appears; give it a longer value"
            ),
            (
                "warning: jobs.yaml:8: jobs[0].env.PW.secret.env: the secret in environment "
                "variable PW has fewer than 4 characters: too short to mask (masked, it would hide "
                "that text in every line), so it shows in clear wherever it appears; give it a "
                "longer value"
            ),
        ], out.stderr
    run = jobvisor("run", cwd=tmp_path, env=env)
    assert "pw=xyz" in run.stderr  # warned of: in clear
    (tmp_path / "short").write_text("k3y\n")
    (tmp_path / "short").chmod(0o600)
    text = "version: 1\njobs:\n  - {name: a, command: [env], env: {K: {secret: {file: short}}}}\n"
    from supervision import load_manifest

    [warning] = load_manifest(write(tmp_path, text), env={}).warnings
    assert warning.path == "jobs[0].env.K.secret.file"
    assert warning.message.startswith(
        f"the secret in file '{tmp_path / 'short'}' has fewer than 4 characters"
    )


def test_a_short_secret_is_hidden_in_a_manifest_error_only_where_it_is_whole() -> None:
    # `TK=ab` made "read***le" of an error's "readable" (h251).
    from supervision._issues import mask

    text = "expected a readable file, got 'ab' (ab) for variable AB"
    assert mask(text, {"ab"}) == "expected a readable file, got '***' (***) for variable AB"
    assert mask("token=s3cr3tvalue, again s3cr3tvalue", {"s3cr3tvalue"}) == ("token=***, again ***")


def test_a_token_written_in_the_manifest_is_warned_of_and_masked(tmp_path: Path) -> None:
    """A plain-text token was taken silently and never masked: a job echoing it logged it in
    clear, while ``--explain`` showed ``token=***`` (review)."""
    token = "plaintexttoken12345"
    write(
        tmp_path,
        f"""
        version: 1
        http: {{listen: "127.0.0.1:0", token: "{token}"}}
        jobs:
          - name: a
            command: [echo, "the token is {token}"]
        """,
    )
    out = jobvisor("validate", "--explain", cwd=tmp_path, env={})
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        (
            "warning: jobs.yaml:3: http.token: the token is written in the manifest, where "
            "whoever reads the file finds it; write token: {secret: {env: NAME}} or "
            "{secret: {file: PATH}} instead (it is masked all the same)"
        )
    ]
    assert "token=***" in out.stdout
    assert token not in out.stdout
    run = jobvisor("run", cwd=tmp_path, env={})
    assert run.returncode == 0, run.stderr
    assert "the token is ***" in run.stderr
    assert token not in run.stdout + run.stderr


def test_a_token_from_a_plain_variable_is_masked_as_a_secret_is_and_not_warned_of(
    tmp_path: Path,
) -> None:
    """``token: "${VAR}"`` was warned of as "written in the manifest": it is not, it comes
    from the environment, and it is masked everywhere as ``{secret: {env: VAR}}`` is (the
    token is collected as a secret whatever it is written as), so nothing is warned of;
    a secret-looking name's "shown in clear" was wrong for it too (review)."""
    token = "from-the-environment-77"
    for name in ("JV_HTTP", "JV_TOKEN"):
        write(
            tmp_path,
            f"""
            version: 1
            http: {{listen: "127.0.0.1:0", token: "${{{name}}}"}}
            jobs:
              - name: a
                command: [echo, "the token is ${{{name}}}"]
            """,
        )
        out = jobvisor("validate", "--explain", cwd=tmp_path, env={name: token})
        assert out.returncode == 0, out.stderr
        assert "http.token" not in out.stderr  # its echo of ${JV_TOKEN}: plain, warned of
        assert "token=***" in out.stdout
        assert "echo 'the token is ***'" in out.stdout
        assert token not in out.stdout
        run = jobvisor("run", cwd=tmp_path, env={name: token})
        assert run.returncode == 0, run.stderr
        assert "the token is ***" in run.stderr
        assert token not in run.stdout + run.stderr


def test_a_token_written_in_part_or_as_a_fallback_is_warned_of_for_that() -> None:
    from supervision import load_manifest

    token = "from-the-environment-77"
    said = (
        "part of the token is written in the manifest (text beside its ${NAME}, or a "
        "${NAME:-fallback}, the token whenever NAME is unset), where whoever reads the file "
        "finds it; write token: {secret: {env: NAME}} or {secret: {file: PATH}} instead (it is "
        "masked all the same)"
    )
    for written in ("${JV_HTTP:-s3cr3t-fallback}", "Bearer-${JV_HTTP}", "${JV_TOKEN:-fallback}"):
        text = f'version: 1\nhttp: {{token: "{written}"}}\njobs: [{{name: a, command: [env]}}]\n'
        loaded = load_manifest(text, env={"JV_HTTP": token, "JV_TOKEN": token})
        assert [(w.path, w.message) for w in loaded.warnings] == [("http.token", said)], written
        assert loaded.http is not None
        assert loaded.http.token in loaded.secrets
    text = 'version: 1\nhttp: {token: "${JV_HTTP:-}"}\njobs: [{name: a, command: [env]}]\n'
    assert load_manifest(text, env={"JV_HTTP": token}).warnings == ()  # unset: blank, refused
