"""The http job kind against a real scripted server: statuses, payloads, retries, cancel, secrets."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from httpkit import Cut, HttpKit, Reply, Reset, Stall, Trickle

from actors import Attempt, RetrySpec, RetryWait, _http, run_with_retry
from actors._http import (
    LOOKUP_WORKERS,
    HttpRequestError,
    HttpStatusError,
    HttpWork,
    LookupTimedOut,
    ResolverNotAnswering,
    check_http_retry_on,
    parse_retry_after,
    resolve,
)
from actors._retry import RETRY_AFTER_MAX, retry_delay
from supervision import (
    Backoff,
    Intensity,
    JobSpec,
    RestartPolicy,
    Schedule,
    SpecError,
    SupervisorSpec,
)

SECRET = "Bearer s3cr3t-t0ken-4f9a"  # a test value that must never be shown
NO_RESTART = RestartPolicy(
    backoff=Backoff(initial=0.001, max=0.001, jitter=0), intensity=Intensity(max_restarts=0)
)
FAST_WAIT = RetryWait(initial=0.001, max=0.01, multiplier=2, jitter=0)


@pytest.fixture
def kit() -> Iterator[HttpKit]:
    with HttpKit() as server:
        yield server


@pytest.fixture
def make_work() -> Iterator[Callable[..., HttpWork]]:
    """HttpWork values whose sessions are closed after the test."""
    made: list[HttpWork] = []

    def make(**kwargs: Any) -> HttpWork:
        work = HttpWork(**kwargs)
        made.append(work)
        return work

    yield make
    for work in made:
        work.close()


def attempt(number: int = 1) -> Attempt:
    return Attempt("h", number, time.time())


def run_retrying(
    work: HttpWork, spec: RetrySpec, at: Attempt | None = None
) -> tuple[Any, list[tuple[int, BaseException, float]]]:
    """Run ``work`` under ``spec``; return its result (or the exception) and the retries.

    Note: ``run_with_retry`` reports ``on_retry`` from tenacity's wait hook, which
    tenacity also calls after the last try, so a run that runs out of tries
    reports one more "retry" than it made; tests count requests instead.
    """
    at = at or attempt()
    retries: list[tuple[int, BaseException, float]] = []
    try:
        result: Any = run_with_retry(
            spec,
            work,
            lambda: work.run(at),
            at.cancelled,
            on_retry=lambda n, exc, delay: retries.append((n, exc, delay)),
            rand=lambda: 0.5,
        )
    except Exception as exc:
        result = exc
    return result, retries


# -- one request ---------------------------------------------------------------------------------


def test_a_2xx_answer_succeeds_with_the_status_as_code(kit, make_work) -> None:
    kit.script(Reply(201))
    work = make_work(url=f"{kit.url}/create")
    assert work.run(attempt()) == 201
    (req,) = kit.requests
    assert (req.method, req.path) == ("GET", "/create")


def test_expect_status_accepts_exactly_the_listed_statuses(kit, make_work) -> None:
    kit.script(Reply(404), Reply(200))
    work = make_work(url=kit.url, expect_status=[404, 410])
    assert work.expect_status == (404, 410)
    assert work.run(attempt()) == 404
    with pytest.raises(HttpStatusError) as info:
        work.run(attempt())
    assert info.value.code == 200
    assert "expected 404, 410" in str(info.value)


def test_an_unexpected_status_fails_with_that_status(kit, make_work) -> None:
    kit.script(Reply(500))
    work = make_work(url=f"{kit.url}/boom", method="post")
    with pytest.raises(HttpStatusError) as info:
        work.run(attempt())
    assert info.value.code == 500
    assert info.value.retry_after is None
    assert str(info.value) == (
        f"POST {kit.url}/boom: status 500 Internal Server Error, expected 2xx"
    )


def test_headers_params_and_json_arrive_at_the_server(kit, make_work) -> None:
    work = make_work(
        url=f"{kit.url}/api",
        method="POST",
        headers={"X-Token": "abc", "Accept": "application/json"},
        params={"page": "2", "q": "a b"},
        json={"name": "etl", "n": [1, 2]},
    )
    assert work.run(attempt()) == 200
    (req,) = kit.requests
    assert req.method == "POST"
    assert req.query == {"page": ["2"], "q": ["a b"]}
    assert req.headers["x-token"] == "abc"
    assert req.headers["accept"] == "application/json"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.body) == {"name": "etl", "n": [1, 2]}


@pytest.mark.parametrize(
    ("body", "sent"), [("héllo wörld", "héllo wörld".encode()), (b"\x00\xff", b"\x00\xff")]
)
def test_a_text_or_bytes_body_arrives_as_sent(kit, make_work, body, sent) -> None:
    work = make_work(url=kit.url, method="PUT", body=body)
    assert work.run(attempt()) == 200
    assert kit.requests[0].body == sent


def test_redirects_are_followed_unless_a_3xx_is_expected(kit, make_work) -> None:
    kit.script(Reply(302, {"Location": "/moved"}), Reply(200), Reply(301, {"Location": "/x"}))
    assert make_work(url=f"{kit.url}/old").run(attempt()) == 200
    assert [r.path for r in kit.requests] == ["/old", "/moved"]
    assert make_work(url=f"{kit.url}/old", expect_status=(301,)).run(attempt()) == 301
    assert kit.count == 3


def test_one_session_serves_every_attempt_over_one_connection(kit, make_work) -> None:
    work = make_work(url=kit.url)
    for n in range(1, 4):
        assert work.run(attempt(n)) == 200
    assert len({r.client for r in kit.requests}) == 1


def test_head_reads_no_body(kit, make_work) -> None:
    assert make_work(url=kit.url, method="HEAD").run(attempt()) == 200
    assert make_work(url=kit.url, method="HEAD").run(attempt()) == 200


def test_a_refused_connection_names_the_cause(make_work) -> None:
    from httpkit import free_port

    work = make_work(url=f"http://127.0.0.1:{free_port()}/x")
    with pytest.raises(HttpRequestError) as info:
        work.run(attempt())
    assert info.value.reason == "connection"
    assert "ConnectionRefusedError" in str(info.value)
    assert work.retryable(info.value, ())


# -- retry with actors.run_with_retry ------------------------------------------------------------


def test_503s_then_200_succeeds_on_the_third_try(kit, make_work) -> None:
    kit.script(Reply(503), Reply(503), Reply(200))
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=3, wait=FAST_WAIT))
    assert result == 200
    assert kit.count == 3
    assert [(n, d) for n, _, d in retries] == [(1, 0.001), (2, 0.002)]
    assert all(isinstance(exc, HttpStatusError) and exc.code == 503 for _, exc, _ in retries)


def test_tries_run_out_after_exactly_the_given_attempts(kit, make_work) -> None:
    kit.script(Reply(503), Reply(503), Reply(200))
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=2, wait=FAST_WAIT))
    assert isinstance(result, HttpStatusError)
    assert result.code == 503
    assert kit.count == 2
    assert retries[0][0] == 1  # the one retry; see the note in run_retrying


def test_connection_resets_are_retried(kit, make_work) -> None:
    kit.script(Reset(), Reset(hard=True), Reply(200))
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=3, wait=FAST_WAIT))
    assert result == 200
    assert kit.count == 3
    reasons = [exc.reason for _, exc, _ in retries if isinstance(exc, HttpRequestError)]
    assert reasons == ["connection", "connection"]


def test_a_stalled_server_times_out_and_is_retried(kit, make_work) -> None:
    kit.script(Stall(), Reply(200))
    work = make_work(url=kit.url, timeout=0.2)
    result, retries = run_retrying(work, RetrySpec(attempts=2, wait=FAST_WAIT))
    assert result == 200
    assert kit.count == 2
    ((_, exc, _),) = retries
    assert isinstance(exc, HttpRequestError)
    assert exc.reason == "timeout"
    assert str(exc) == f"GET {kit.url}: timed out after 0.2s"


def test_404_is_not_retried_by_default(kit, make_work) -> None:
    kit.script(Reply(404), Reply(200))
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=3, wait=FAST_WAIT))
    assert isinstance(result, HttpStatusError)
    assert result.code == 404
    assert (kit.count, retries) == (1, [])


def test_retry_on_narrows_and_widens_what_is_retried(kit, make_work) -> None:
    kit.script(Reply(404), Reply(200), Reply(503))
    result, _ = run_retrying(
        make_work(url=kit.url), RetrySpec(attempts=3, wait=FAST_WAIT, on=("4xx",))
    )
    assert result == 200
    result, _ = run_retrying(
        make_work(url=kit.url), RetrySpec(attempts=3, wait=FAST_WAIT, on=("502",))
    )
    assert isinstance(result, HttpStatusError)
    assert kit.count == 3


def test_429_is_retried(kit, make_work) -> None:
    kit.script(Reply(429), Reply(200))
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=2, wait=FAST_WAIT))
    assert result == 200
    assert kit.count == 2
    assert retries[0][0] == 1  # the one retry; see the note in run_retrying


def test_retry_after_replaces_the_computed_wait(kit, make_work) -> None:
    # 0 seconds from the header instead of the computed 0.005.
    kit.script(Reply(503, {"Retry-After": "0"}), Reply(429, {"Retry-After": "0"}), Reply(200))
    wait = RetryWait(initial=0.005, max=0.01, jitter=0)
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=3, wait=wait))
    assert result == 200
    assert [d for _, _, d in retries] == [0.0, 0.0]


def test_retry_after_beyond_wait_max_is_honoured(kit, make_work) -> None:
    """The server's Retry-After wins over wait.max (SPEC: honour it); a retry sooner than
    asked would only meet another 429. The trial's 2 s was cut to wait.max's 1 s."""
    kit.script(Reply(503, {"Retry-After": "1"}), Reply(200))
    wait = RetryWait(initial=0.001, max=0.02, jitter=0)
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=2, wait=wait))
    assert result == 200
    ((_, exc, delay),) = retries
    assert isinstance(exc, HttpStatusError)
    assert exc.retry_after == 1.0
    assert "Retry-After 1s" in str(exc)
    assert delay == 1.0


@pytest.mark.parametrize(
    ("hinted", "expected"),
    [(None, 0.004), (0.5, 0.5), (120.0, 120.0), (-3.0, 0.0), (10_000.0, RETRY_AFTER_MAX)],
)
def test_retry_delay(hinted: float | None, expected: float) -> None:
    wait = RetryWait(initial=0.001, max=0.02, multiplier=2, jitter=0)
    assert retry_delay(wait, 3, hinted, 0.5) == expected


def test_retry_after_as_an_http_date(kit, make_work) -> None:
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    kit.script(Reply(429, {"Retry-After": past}), Reply(200))
    wait = RetryWait(initial=0.01, max=0.02, jitter=0)
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=2, wait=wait))
    assert result == 200
    assert [d for _, _, d in retries] == [0.0]


def test_retry_after_counts_only_on_429_and_503(kit, make_work) -> None:
    kit.script(Reply(500, {"Retry-After": "0"}), Reply(200))
    wait = RetryWait(initial=0.003, max=0.01, jitter=0)
    result, retries = run_retrying(make_work(url=kit.url), RetrySpec(attempts=2, wait=wait))
    assert result == 200
    assert [d for _, _, d in retries] == [0.003]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("-1", None),
        ("1.5", None),
        (None, None),
    ],
)
def test_parse_retry_after(value, seconds) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:27:30 GMT").timestamp()
    assert parse_retry_after(value, now=now) == seconds


@pytest.mark.parametrize(
    ("exc", "on", "expected"),
    [
        (HttpStatusError("", 503), (), True),
        (HttpStatusError("", 500), (), True),
        (HttpStatusError("", 429), (), True),
        (HttpStatusError("", 404), (), False),
        (HttpStatusError("", 400), ("4xx",), True),
        (HttpStatusError("", 503), ("4xx",), False),
        (HttpStatusError("", 503), ("503",), True),
        (HttpStatusError("", 502), ("503",), False),
        (HttpStatusError("", 429), ("429",), True),
        (HttpRequestError("", "connection"), (), True),
        (HttpRequestError("", "timeout"), (), True),
        (HttpRequestError("", "timeout"), ("connection",), False),
        (HttpRequestError("", "cancelled"), (), False),
        (HttpRequestError("", "invalid"), (), False),
        (ValueError("x"), (), False),
    ],
)
def test_retryable_classes(exc, on, expected) -> None:
    assert HttpWork(url="http://h").retryable(exc, on) is expected


def test_retry_on_tokens_are_checked() -> None:
    check_http_retry_on(("connection", "timeout", "5xx", "4xx", "429", "503"))
    with pytest.raises(SpecError, match=r"retry\.on.*'5XX'"):
        check_http_retry_on(("5XX",))
    with pytest.raises(SpecError, match="'600'"):
        check_http_retry_on(("600",))


# -- cancel --------------------------------------------------------------------------------------


def _run_in_thread(work: HttpWork, at: Attempt) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = work.run(at)
        except Exception as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, name="http-test-run")
    thread.start()
    return thread, out


def test_cancel_aborts_the_request_in_flight(kit, make_work) -> None:
    kit.script(Stall())
    work = make_work(url=kit.url, timeout=30)
    at = attempt()
    thread, out = _run_in_thread(work, at)
    kit.wait_requests(1)
    started = time.monotonic()
    at.cancelled.set()
    work.cancel(at)
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5  # far below the 30s timeout
    error = out["error"]
    assert isinstance(error, HttpRequestError)
    assert error.reason == "cancelled"
    assert not work.retryable(error, ())


def test_cancel_touches_only_its_own_attempt(kit, make_work) -> None:
    release = threading.Event()
    kit.script(Stall(), Stall(release=release, then=Reply(202)))
    work = make_work(url=kit.url, timeout=30)
    first, second = attempt(1), attempt(2)
    thread1, out1 = _run_in_thread(work, first)
    kit.wait_requests(1)
    thread2, out2 = _run_in_thread(work, second)
    kit.wait_requests(2)
    work.cancel(first)
    thread1.join(10)
    assert out1["error"].reason == "cancelled"
    assert thread2.is_alive()
    release.set()
    thread2.join(10)
    assert out2 == {"result": 202}


def test_a_cancelled_attempt_sends_nothing(kit, make_work) -> None:
    at = attempt()
    at.cancelled.set()
    with pytest.raises(HttpRequestError, match="cancelled"):
        make_work(url=kit.url).run(at)
    assert kit.count == 0


def test_close_then_run_opens_a_new_session(kit, make_work) -> None:
    work = make_work(url=kit.url)
    assert work.run(attempt()) == 200
    work.close()
    work.close()
    assert work.run(attempt()) == 200
    clients = [r.client for r in kit.requests]
    assert clients[0] != clients[1]


# -- secrets -------------------------------------------------------------------------------------


def test_no_header_value_or_body_shows_anywhere(kit, make_work, logs, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    kit.script(Reply(503), Reset(), Reply(401))
    work = make_work(
        url=f"{kit.url}/x",
        method="PUT",  # retried on 503 and a reset by default
        headers={"Authorization": SECRET},
        body=f"password={SECRET}",
    )
    result, retries = run_retrying(work, RetrySpec(attempts=3, wait=FAST_WAIT))
    assert isinstance(result, HttpStatusError)
    assert result.code == 401
    assert kit.wait_requests(3)[0].headers["authorization"] == SECRET  # it was sent
    errors = [result, *(exc for _, exc, _ in retries)]
    shown = [str(e) for e in errors] + [repr(e) for e in errors]
    shown += [repr(work), work.describe()]
    shown += [r.getMessage() for r in caplog.records]
    shown += [r.message for r in logs.records] + list(logs.formatted_records)
    for text in shown:
        assert SECRET not in text, text
        assert "s3cr3t" not in text, text


def test_the_password_of_the_url_is_redacted(kit, make_work) -> None:
    kit.script(Reply(500))
    work = make_work(url=f"http://user:hunter2@127.0.0.1:{kit.port}/x")
    with pytest.raises(HttpStatusError) as info:
        work.run(attempt())
    assert kit.requests[0].headers["authorization"].startswith("Basic ")
    assert work.describe() == f"GET http://user:***@127.0.0.1:{kit.port}/x"
    assert "hunter2" not in str(info.value)
    with pytest.raises(SpecError) as bad:
        HttpWork(url="ftp://user:hunter2@h/x")
    assert "hunter2" not in str(bad.value)


def test_a_bad_header_value_is_refused_without_echoing_it() -> None:
    with pytest.raises(SpecError) as info:
        HttpWork(url="http://h", headers={"Authorization": f"{SECRET}\r\nX: y"})
    assert "Authorization" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_header_name_ending_in_a_newline_is_refused() -> None:
    # ``$`` also matches before a final newline: "X-A\n" passed as a token.
    with pytest.raises(SpecError, match=r"http\.headers"):
        HttpWork(url="http://h", headers={"X-A\n": "v"})


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://h/x"}, "http.url"),
        ({"url": "localhost:80"}, "http.url"),
        ({"url": "http://"}, "http.url"),
        ({"url": "http://h", "method": "FETCH"}, "http.method"),
        ({"url": "http://h", "json": {}, "body": "x"}, "at most one of json and body"),
        ({"url": "http://h", "json": {1, 2}}, "http.json"),
        ({"url": "http://h", "body": 3}, "http.body"),
        ({"url": "http://h", "timeout": 0}, "http.timeout"),
        ({"url": "http://h", "timeout": "5"}, "http.timeout"),
        ({"url": "http://h", "expect_status": (99,)}, "http.expect_status"),
        ({"url": "http://h", "expect_status": (600,)}, "http.expect_status"),
        ({"url": "http://h", "headers": {"Bad Name": "x"}}, "header names"),
        ({"url": "http://h", "headers": {"X-N": 5}}, "expected a string"),
        ({"url": "http://h", "params": {"n": 5}}, "http.params"),
    ],
)
def test_invalid_http_specs_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        HttpWork(**kwargs)


def test_describe_and_kind() -> None:
    work = HttpWork(url="https://api.example.com/v1/run?x=1", method="delete")
    assert work.describe() == "DELETE https://api.example.com/v1/run?x=1"
    assert work.kind == "http"
    assert work == HttpWork(url="https://api.example.com/v1/run?x=1", method="DELETE")


# -- end to end, through a tree ------------------------------------------------------------------


def test_an_http_job_succeeds_in_a_tree(kit, make_tree, make_work) -> None:
    kit.script(Reply(204))
    job = JobSpec(name="h", work=make_work(url=f"{kit.url}/ping"))
    tree = make_tree(SupervisorSpec(children=(job,)))
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert (node["kind"], node["state"]) == ("http", "succeeded")
    assert node["last_exit"]["code"] == 204
    assert tree.result().ok
    # The process's deadline timer is named its own, not as a tree's scheduler: after the
    # tree stopped, one named so was taken for the tree's, left running (h233).
    assert tree.stop(10)
    names = {t.name for t in threading.enumerate()}
    assert "jobvisor-http-deadlines" in names
    assert "jobvisor-scheduler" not in names, names


def test_an_http_job_with_a_bad_status_fails_in_a_tree(kit, make_tree, make_work) -> None:
    kit.script(Reply(401))
    work = make_work(url=f"{kit.url}/ping", headers={"Authorization": SECRET})
    tree = make_tree(SupervisorSpec(policy=NO_RESTART, children=(JobSpec(name="h", work=work),)))
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert node["state"] == "gave_up"
    assert node["last_exit"]["outcome"] == "failed"
    assert "status 401 Unauthorized" in node["last_exit"]["error"]
    assert SECRET not in json.dumps(tree.status())
    assert not tree.result().ok


def test_stopping_an_http_job_aborts_its_request(kit, make_tree, make_work) -> None:
    kit.script(Stall())
    job = JobSpec(name="h", work=make_work(url=kit.url, timeout=60), grace=30)
    tree = make_tree(SupervisorSpec(children=(job,)))
    kit.wait_requests(1)
    started = time.monotonic()
    tree.stop_child("h")
    node = tree.status()["children"][0]
    assert node["state"] == "stopped"
    assert node["last_exit"]["outcome"] == "stopped"  # ended by cancel, not killed after grace
    assert node["failures"] == 0
    assert time.monotonic() - started < 10


def test_a_pickled_copy_gets_its_own_session(kit, make_work) -> None:
    import pickle

    work = make_work(url=kit.url, headers={"X-A": "b"})
    assert work.run(attempt()) == 200
    copy = pickle.loads(pickle.dumps(work))
    assert copy == work
    try:
        assert copy.run(attempt()) == 200
    finally:
        copy.close()
    clients = [r.client for r in kit.requests]
    assert clients[0] != clients[1]


def test_https_works_and_cancel_aborts_below_tls(tmp_path, make_work, monkeypatch) -> None:
    from httpkit import self_signed

    made = self_signed(tmp_path)
    if made is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, context = made
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # requests trusts our certificate
    with HttpKit(Reply(200), Stall(), ssl_context=context) as tls:
        assert tls.url.startswith("https://")
        work = make_work(url=tls.url, timeout=30)
        assert work.run(attempt()) == 200
        at = attempt(2)
        thread, out = _run_in_thread(work, at)
        tls.wait_requests(2)
        work.cancel(at)
        thread.join(10)
        assert not thread.is_alive()
        assert out["error"].reason == "cancelled"


def test_a_stopped_http_job_closes_its_pooled_connection(kit: HttpKit, make_tree) -> None:
    """Keep-alive between attempts and restarts; nothing left open once the job is stopped."""
    job = JobSpec(name="h", work=HttpWork(url=f"{kit.url}/tick"), schedule=Schedule(every=0.02))
    tree = make_tree(SupervisorSpec(children=(job,)))
    kit.wait_requests(3)
    kit.wait_connections(1)  # every attempt went over the one pooled connection
    tree.stop_child("h")
    kit.wait_connections(0)
    tree.start_child("h")
    kit.wait_requests(kit.count + 2)
    kit.wait_connections(1)
    assert tree.stop(10)
    kit.wait_connections(0)


def test_an_http_job_down_in_backoff_at_the_stop_closes_its_connection(
    kit: HttpKit, make_tree, events
) -> None:
    kit.script(Reply(500))
    policy = RestartPolicy(backoff=Backoff(initial=30, max=30, jitter=0))
    job = JobSpec(name="h", work=HttpWork(url=f"{kit.url}/down"))
    tree = make_tree(SupervisorSpec(policy=policy, children=(job,)), on_event=events)
    events.reached("h", "backoff")
    kit.wait_connections(1)  # kept alive for the next attempt, 30 s away
    assert tree.stop(10)
    kit.wait_connections(0)


def test_http_failures_pickle_with_their_fields() -> None:
    # A placed http job's failure comes back from its Ray node pickled (SPEC §8).
    import pickle

    from actors._http import HttpRequestError

    status = pickle.loads(pickle.dumps(HttpStatusError("GET /: status 503", 503, 2.5)))
    assert (type(status), str(status), status.code, status.retry_after) == (
        HttpStatusError,
        "GET /: status 503",
        503,
        2.5,
    )
    request = pickle.loads(pickle.dumps(HttpRequestError("GET /: timed out", "timeout")))
    assert (type(request), str(request), request.reason) == (
        HttpRequestError,
        "GET /: timed out",
        "timeout",
    )


# -- http.timeout bounds the whole request ------------------------------------------------------


# Every way a body can be framed. The trial's: with ``Connection: close`` or as HTTP/1.0
# without a length, http.client hands the socket to the answer and the connection forgets
# it, so the deadline and a cancel, which shut the connection's socket, found none.
FRAMINGS = ["chunked", "length", "length+close", "close"]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_body_that_never_ends_times_out_at_the_timeout(kit, make_work, framing) -> None:
    """``timeout`` bounds the request from connect to the body's end (curl --max-time): a
    server that answers at once and then sends a byte now and then held the attempt for ever."""
    kit.script(Trickle(every=0.05, framing=framing))
    work = make_work(url=f"{kit.url}/trickle", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(HttpRequestError) as info:
        work.run(attempt())
    took = time.monotonic() - started
    assert 0.45 < took < 3, took
    assert info.value.reason == "timeout"
    message = str(info.value)
    assert message.startswith(f"GET {kit.url}/trickle: timed out after 0.5s reading the body")
    assert re.search(r"status 200, \d+ bytes? read", message), message
    assert not work.retryable(HttpRequestError("", "cancelled"), ())


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_timed_out_body_says_how_much_of_it_came(kit, make_work, framing) -> None:
    """Under gevent it always said ``0 bytes read``: gevent's own shutdown made the waiting
    read raise, and what it had gathered was lost. Sent, then quiet: an exact count."""
    # Paced, so the count is summed over several reads (one counting only its last read's
    # bytes said 1); a timeout far past the 5 x 10 ms, as five paced wake-ups of a loaded
    # server's thread outlasted a 0.5 s deadline and the count was then 3 or 4. Each framing
    # waits it out whole: 1.5 s, not more.
    kit.script(Trickle(every=0.01, framing=framing, upto=5))
    work = make_work(url=f"{kit.url}/five", timeout=1.5)
    with pytest.raises(HttpRequestError) as info:
        work.run(attempt())
    assert str(info.value) == (
        f"GET {kit.url}/five: timed out after 1.5s reading the body (status 200, 5 bytes read)"
    )


def test_a_head_that_never_ends_times_out_at_the_timeout(kit, make_work) -> None:
    """A status line, then a header a byte at a time: the shutdown at the deadline ended the
    head, which read as a whole one, and the message told of a body (``0 bytes read``)."""
    kit.script(Trickle(every=0.05, framing="headers"))
    work = make_work(url=f"{kit.url}/head", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(HttpRequestError) as info:
        work.run(attempt())
    assert 0.45 < time.monotonic() - started < 3
    assert info.value.reason == "timeout"
    assert str(info.value) == f"GET {kit.url}/head: timed out after 0.5s"


@pytest.mark.parametrize("framing", ["length+close", "close"])
def test_each_try_of_a_body_ended_by_the_close_times_out_and_is_retried(
    kit, make_work, framing
) -> None:
    kit.script(Trickle(every=0.05, framing=framing), Trickle(every=0.05, framing=framing))
    work = make_work(url=f"{kit.url}/trickle", timeout=0.3)
    started = time.monotonic()
    result, _ = run_retrying(work, RetrySpec(attempts=2, wait=FAST_WAIT))
    took = time.monotonic() - started
    assert isinstance(result, HttpRequestError), result
    assert result.reason == "timeout"
    assert "timed out after 0.3s reading the body (status 200, " in str(result)
    assert kit.count == 2
    assert 0.55 < took < 2.5, took


@pytest.mark.parametrize("framing", ["length+close", "close"])
def test_cancel_aborts_a_body_ended_by_the_close(kit, make_work, framing) -> None:
    kit.script(Trickle(every=0.05, framing=framing))
    work = make_work(url=f"{kit.url}/trickle", timeout=30)
    at = attempt()
    thread, out = _run_in_thread(work, at)
    kit.wait_trickled(3)  # the head is out: the client reads the body
    started = time.monotonic()
    at.cancelled.set()
    work.cancel(at)
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1
    assert out["error"].reason == "cancelled"


@pytest.mark.parametrize("framing", ["length+close", "close"])
def test_stopping_an_http_job_reading_a_body_ended_by_the_close_aborts_it(
    kit, make_tree, make_work, framing
) -> None:
    """The trial's: the stop waited its grace out and killed the job (last exit ``killed``)."""
    kit.script(Trickle(every=0.05, framing=framing))
    job = JobSpec(name="h", work=make_work(url=f"{kit.url}/trickle", timeout=60), grace=2)
    tree = make_tree(SupervisorSpec(children=(job,)))
    kit.wait_trickled(3)
    started = time.monotonic()
    tree.stop_child("h")
    took = time.monotonic() - started
    node = tree.status()["children"][0]
    assert node["state"] == "stopped"
    assert node["last_exit"]["outcome"] == "stopped"  # ended by cancel, not killed after grace
    assert took < 1, took


@pytest.mark.parametrize("framing", ["chunked", "length+close", "close"])
def test_a_timed_out_request_is_an_attempt_of_outcome_timeout(
    kit, make_tree, make_work, framing
) -> None:
    kit.script(Trickle(every=0.05, framing=framing))
    job = JobSpec(name="h", work=make_work(url=f"{kit.url}/trickle", timeout=0.3))
    tree = make_tree(SupervisorSpec(policy=NO_RESTART, children=(job,)))
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert node["state"] == "gave_up"
    assert node["last_exit"]["outcome"] == "timeout"
    assert "timed out after 0.3s reading the body" in node["last_exit"]["error"]


def test_a_body_cut_short_says_how_much_of_it_came(kit, make_work) -> None:
    kit.script(Cut(length=100, sent=10))
    with pytest.raises(HttpRequestError) as info:
        make_work(url=f"{kit.url}/cut").run(attempt())
    assert info.value.reason == "connection"
    assert str(info.value) == (
        f"GET {kit.url}/cut: connection failed: the body ended after 10 of 100 bytes"
    )


# -- non-idempotent methods: retries and redirects ------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_post_is_retried_by_default_as_any_http_job_is(kit, make_work, method) -> None:
    """SPEC §2 fixes the default for every http job (connection errors, timeouts, 5xx, 429):
    a POST too; ``validate`` warns that its server may have acted on the failed try."""
    kit.script(Reply(500), Reply(503, {"Retry-After": "0"}), Reply(429), Reply(201))
    spec = RetrySpec(attempts=4, wait=FAST_WAIT)
    result, _ = run_retrying(make_work(url=kit.url, method=method, json={"v": 1}), spec)
    assert result == 201
    assert kit.count == 4


def test_validate_warns_of_a_post_retried_on_what_the_server_may_have_done() -> None:
    from supervision import load_manifest

    def warnings(retry: str, method: str = "POST") -> list[str]:
        text = (
            "version: 1\njobs:\n"
            f"  - {{name: deploy, http: {{url: 'http://127.0.0.1:1/d', method: {method}}}, "
            f"{retry}}}\n"
        )
        return [w.message for w in load_manifest(text, env={}).warnings]

    (said,) = warnings("retry: {attempts: 3}")
    assert "deploy sends a POST, which is retried on a timeout and a 5xx" in said
    assert "retry: {on: [429]}" in said
    assert warnings("retry: {attempts: 3}", "PATCH")
    assert not warnings("retry: {attempts: 3, on: [connection, 429]}")
    assert not warnings("retry: {attempts: 3}", "PUT")
    assert not warnings("retry: {attempts: 1}")


def test_a_retry_block_without_attempts_makes_three_tries_in_a_real_run(
    kit: HttpKit, tmp_path: Path
) -> None:
    """The trial's manifest, as the README and the POST warning advise: ``retry: {on: [429]}``
    made one try and failed (attempts defaulted to 1). Now 3 tries, and not one more."""
    kit.script(*[Reply(429, {"Retry-After": "0"})] * 3, Reply(201))
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs:\n"
        f"  - {{name: post429, http: {{url: '{kit.url}/p', method: POST}}, retry: {{on: [429]}}, "
        "restart: temporary}\n",
        encoding="utf-8",
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "cli.py"), "run", "jobs.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert kit.count == 3, out.stderr
    assert out.stderr.count("post429: try ") == 2, out.stderr  # two retries, each said
    assert "status 429 Too Many Requests" in out.stderr


def test_an_explicit_retry_on_wins_for_a_post(kit, make_work) -> None:
    kit.script(Reply(500), Reply(200))
    spec = RetrySpec(attempts=3, wait=FAST_WAIT, on=("5xx",))
    result, _ = run_retrying(make_work(url=kit.url, method="POST"), spec)
    assert result == 200
    assert kit.count == 2


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_redirect_of_a_request_other_than_get_or_head_is_not_followed(
    kit, make_work, method
) -> None:
    """requests follows a POST's 302 as a GET without its body, and says it succeeded."""
    kit.script(Reply(302, {"Location": "http://u:hunter2@127.0.0.1:1/moved"}))
    work = make_work(url=f"{kit.url}/deploy", method=method, json={"deploy": "v42"})
    with pytest.raises(HttpStatusError) as info:
        work.run(attempt())
    assert info.value.code == 302
    assert kit.count == 1
    message = str(info.value)
    assert "status 302 Found, expected 2xx" in message
    assert "redirected to http://u:***@127.0.0.1:1/moved (not followed" in message
    assert "hunter2" not in message


def test_a_get_redirected_to_another_host_drops_the_headers_set_from_secrets(
    kit, make_work
) -> None:
    kit.script(
        Reply(302, {"Location": "/same"}),
        Reply(302, {"Location": f"http://localhost:{kit.port}/other"}),
        Reply(200),
    )
    work = make_work(
        url=f"{kit.url}/start",
        headers={"X-Api-Key": "k3y-s3cr3t", "X-Plain": "p", "Authorization": SECRET},
        secret_headers=("X-Api-Key",),
    )
    assert work.run(attempt()) == 200
    _, same, other = kit.wait_requests(3)
    assert same.headers["x-api-key"] == "k3y-s3cr3t"  # the same host: kept
    assert same.headers["authorization"] == SECRET
    assert other.path == "/other"
    assert "x-api-key" not in other.headers
    assert "authorization" not in other.headers
    assert other.headers["x-plain"] == "p"


# -- header values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"headers": {"X": 5}}, "http.headers.X: expected a string, got an integer"),
        ({"json": {1, 2}}, "got a set"),
        ({"body": 5}, "http.body: expected the request body as a string, got an integer"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_by_its_kind_in_words(
    fields: dict[str, Any], said: str
) -> None:
    """Never shown (it may be a secret), and never as Python's type name: "got int"."""
    with pytest.raises(SpecError) as info:
        HttpWork(url="http://h", **fields)
    assert str(info.value).endswith(said), info.value


def test_a_header_value_that_is_not_latin_1_is_refused_naming_the_header() -> None:
    with pytest.raises(SpecError) as info:
        HttpWork(url="http://h", headers={"X-Api-Key": "abc€secretEURO"})
    message = str(info.value)
    assert "X-Api-Key" in message
    assert "Latin-1" in message
    assert "secretEURO" not in message
    assert "abc" not in message


# -- host name lookups ---------------------------------------------------------------------------


def hanging_lookup(release: threading.Event, asked: list[tuple[Any, ...]]) -> Callable[..., Any]:
    """A resolver that answers only once ``release`` is set (as a hung DNS server would never)."""

    def lookup(*args: Any) -> list[Any]:
        asked.append(args)
        release.wait()
        return socket.getaddrinfo("127.0.0.1", args[1], type=socket.SOCK_STREAM)

    return lookup


def test_a_hung_host_name_lookup_is_waited_for_only_what_is_left_of_the_deadline() -> None:
    release, asked = threading.Event(), []
    began = time.monotonic()
    try:
        with pytest.raises(LookupTimedOut, match=r"^host name lookup timed out after 200ms$"):
            resolve("db.example", 5432, within=0.2, lookup=hanging_lookup(release, asked))
        waited = time.monotonic() - began
    finally:
        release.set()  # the lookup's thread ends
    assert asked == [("db.example", 5432, 0, socket.SOCK_STREAM)]
    assert 0.2 <= waited < 2.0


def test_a_lookup_answers_and_fails_as_the_resolver_does_and_an_abort_ends_its_wait() -> None:
    release, asked = threading.Event(), []
    release.set()
    (found,) = resolve("db.example", 80, within=5, lookup=hanging_lookup(release, asked))
    assert found[4] == ("127.0.0.1", 80)

    def unknown(*_: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(socket.gaierror):
        resolve("nowhere.example", 80, within=5, lookup=unknown)
    hung = threading.Event()
    try:
        began = time.monotonic()
        with pytest.raises(OSError, match="cut short"):
            resolve(
                "db.example", 80, within=30, aborted=lambda: True, lookup=hanging_lookup(hung, [])
            )
        assert time.monotonic() - began < 2.0  # not the 30 s
    finally:
        hung.set()
    # An address is no name: nothing to wait for, no thread.
    assert resolve("127.0.0.1", 80, within=0, lookup=socket.getaddrinfo)[0][4] == ("127.0.0.1", 80)


def test_a_request_to_localhost_still_goes_through(kit, make_work) -> None:
    kit.script(Reply(204))
    work = make_work(url=f"http://localhost:{kit.port}/x", timeout=5)
    assert work.run(attempt()) == 204


def test_every_try_a_hung_lookup_fails_says_the_same_text(make_work, monkeypatch) -> None:
    # The crash-loop damper groups failures by their text: the time left (1.998s,
    # 1.999s, ...) made each differ, and a loop of them was never damped.
    release, asked = threading.Event(), []
    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup(release, asked))
    work = make_work(url="http://api.example:8080/feed", timeout=0.25)
    said = []
    try:
        for number in (1, 2):
            with pytest.raises(HttpRequestError) as info:
                work.run(attempt(number))
            assert info.value.reason == "timeout"
            said.append(str(info.value))
    finally:
        release.set()
    assert said == ["GET http://api.example:8080/feed: host name lookup timed out after 250ms"] * 2


def hosts_file_first() -> bool:
    """Whether this system answers ``localhost`` from /etc/hosts before asking a server."""
    try:
        conf = Path("/etc/nsswitch.conf").read_text().splitlines()
        hosts = Path("/etc/hosts").read_text().split()
    except OSError:
        return False
    first = [line.split()[1:2] for line in conf if line.startswith("hosts:")]
    return first == [["files"]] and "localhost" in hosts


def lookup_threads() -> int:
    return sum(t.name == "jobvisor-lookup" for t in threading.enumerate())


def test_hung_lookups_hold_no_more_than_the_pools_threads_and_it_recovers() -> None:
    # A thread per lookup: 200 hung lookups left 200 threads until the resolver gave up.
    release, asked = threading.Event(), []
    lookup = hanging_lookup(release, asked)
    said = []
    try:
        for n in range(50):
            with pytest.raises(LookupTimedOut) as info:
                resolve(f"db{n}.example", 80, within=0.01, lookup=lookup)
            said.append(str(info.value))
            assert lookup_threads() <= LOOKUP_WORKERS
        assert len(asked) == LOOKUP_WORKERS  # each worker is stuck in one
        # Every worker stuck: a new name fails at once, not after its 30 s.
        began = time.monotonic()
        with pytest.raises(ResolverNotAnswering) as info:
            resolve("other.example", 80, within=30, lookup=lookup)
        assert time.monotonic() - began < 2.0
        assert str(info.value) == (
            "host name lookup: the resolver is not answering "
            f"(all {LOOKUP_WORKERS} lookup threads are stuck)"
        )
        assert said[-1] == str(info.value)
        if hosts_file_first():  # answered there: no thread, nothing to hang
            assert resolve("localhost", 80, within=1)[0][4][1] == 80
    finally:
        release.set()
    # The name a worker was stuck on shares its lookup, or gets a worker it freed.
    assert resolve(asked[0][0], 80, within=5, lookup=lookup)[0][4] == ("127.0.0.1", 80)
    assert resolve("new.example", 81, within=5, lookup=lookup)[0][4] == ("127.0.0.1", 81)
    assert lookup_threads() <= LOOKUP_WORKERS


def test_lookups_of_one_name_share_the_one_in_flight() -> None:
    release, asked = threading.Event(), []
    lookup = hanging_lookup(release, asked)
    found: list[Any] = []
    first = threading.Thread(
        target=lambda: found.extend(resolve("db.example", 80, within=10, lookup=lookup)),
        name="test-first-lookup",
    )
    first.start()
    try:
        with pytest.raises(LookupTimedOut):
            resolve("db.example", 80, within=0.2, lookup=lookup)
    finally:
        release.set()
        first.join(10)
    assert found[0][4] == ("127.0.0.1", 80)
    assert asked == [("db.example", 80, 0, socket.SOCK_STREAM)]


def test_a_burst_of_names_to_idle_workers_is_queued_not_refused() -> None:
    # Workers only notified (none has taken a lookup yet) are not stuck: the fifth name of a
    # burst was refused with "the resolver is not answering" while four idle workers woke.
    def slow(host: str, port: int, family: int, kind: int) -> list[Any]:
        time.sleep(0.05)
        return [(socket.AF_INET, kind, 6, "", ("127.0.0.1", port))]

    warm = [
        threading.Thread(
            target=resolve, args=(f"w{n}.example", 80), kwargs={"within": 5, "lookup": slow}
        )
        for n in range(LOOKUP_WORKERS)
    ]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join(10)
    pool = _http._lookups()
    asked = [
        pool.ask(_http._Lookup((slow, f"n{n}.example", 80, 0))) for n in range(LOOKUP_WORKERS + 1)
    ]
    try:
        assert all(a is not None for a in asked)
        for a in asked:
            assert a is not None
            assert a.done.wait(10)
            assert a.failed is None
            assert a.answer
    finally:
        for a in asked:
            if a is not None:
                pool.leave(a)


def test_each_waiter_of_a_shared_failed_lookup_raises_its_own_error() -> None:
    # One object raised in every waiting thread gathered each one's frames in its traceback.
    release = threading.Event()

    def failing(host: str, port: int, family: int, kind: int) -> list[Any]:
        release.wait(10)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    raised: list[BaseException] = []

    def ask() -> None:
        try:
            resolve("gone.example", 80, within=10, lookup=failing)
        except OSError as exc:
            raised.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    key = (failing, "gone.example", 80, 0)
    while (
        shared := _http._lookups().table.get(key)
    ) is None or shared.waiters < 3:  # the event holds it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(raised) == 3
    assert len({id(exc) for exc in raised}) == 3
    assert all(
        isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_NONAME for exc in raised
    )
