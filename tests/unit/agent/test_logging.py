"""Logging renders what operators tail, and never a secret, whoever passed it.

Tests read the real rendered output from a stream (not captured event dicts), because
redaction that runs in the wrong place of the chain would pass a capture_logs test.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from ldap3.utils import log as ldap3_log
from pydantic import SecretBytes, SecretStr

from agent.logging import REDACTED, configure_logging, get_logger, is_secret_key, scrub_text

SECRET = "Hunter2-secret"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it all back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libs = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "apscheduler")}
    ldap3_detail = ldap3_log.get_library_log_detail_level()
    ldap3_hide = ldap3_log.get_library_log_hide_sensitive_data()
    structlog_config = structlog.get_config()
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    for name, lib_level in libs.items():
        logging.getLogger(name).setLevel(lib_level)
    ldap3_log.set_library_log_detail_level(ldap3_detail)
    ldap3_log.set_library_log_hide_sensitive_data(ldap3_hide)
    structlog.reset_defaults()
    structlog.configure(**structlog_config)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_when_stream_is_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    get_logger("agent.pipeline").info(
        "request.succeeded", request_id="r-1", op="reset", status="succeeded", duration_ms=12
    )
    [line] = _json_lines(out.getvalue())
    assert line["event"] == "request.succeeded"
    assert line["level"] == "info"
    assert line["logger"] == "agent.pipeline"
    assert line["duration_ms"] == 12
    assert isinstance(line["timestamp"], str)
    assert line["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]


def test_console_lines_on_a_tty_and_when_forced() -> None:
    tty = _Tty()
    configure_logging("info", stream=tty)
    get_logger("agent.service").info("agent.started", agent_id="a-1")
    text = tty.getvalue()
    assert "agent.started" in text
    assert "agent_id" in text
    assert "\x1b[" in text  # coloured for a human at a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)

    plain = io.StringIO()
    configure_logging("info", fmt="console", stream=plain)
    get_logger("agent.service").info("agent.started", agent_id="a-1")
    text = plain.getvalue()
    assert "agent.started" in text
    assert "agent_id=a-1" in text
    assert "\x1b[" not in text  # no escape codes into a file


def test_json_forced_on_a_tty() -> None:
    tty = _Tty()
    configure_logging("info", fmt="json", stream=tty)
    get_logger("x").info("relay.up")
    assert _json_lines(tty.getvalue())[0]["event"] == "relay.up"


def test_level_filters_our_events_and_library_records() -> None:
    out = io.StringIO()
    configure_logging("warning", stream=out)
    get_logger("agent").info("request.received")
    logging.getLogger("somelib").info("chatter")
    get_logger("agent").warning("key.expiring", key="k1", expires_in_s=60)
    assert [e["event"] for e in _json_lines(out.getvalue())] == ["key.expiring"]


def test_every_method_is_filtered_by_its_level_before_the_chain_runs() -> None:
    """Below the level a line is dropped before its context is copied and the chain
    runs (wire/log_setup.py LevelGatedLogger); at or above it, each method writes."""
    out = io.StringIO()
    configure_logging("warning", stream=out)
    calls: list[str] = []
    config = structlog.get_config()
    structlog.configure(processors=[_counting(calls), *config["processors"]])
    log = get_logger("agent").bind(request_id="r1")
    log.debug("request.writing")
    log.info("request.received")
    log.log(logging.INFO, "request.received")
    assert calls == [] and out.getvalue() == ""
    log.warning("key.expiring")
    log.log(logging.ERROR, "journal.failed")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("request.crashed")
    log.critical("agent.stopping")
    assert calls == ["warning", "error", "exception", "critical"]
    lines = _json_lines(out.getvalue())
    assert [e["event"] for e in lines] == [
        "key.expiring", "journal.failed", "request.crashed", "agent.stopping"]
    assert {e["request_id"] for e in lines} == {"r1"}


def _counting(calls: list[str]) -> structlog.typing.Processor:
    def processor(
        _logger: object, method: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        calls.append(method)
        return event

    return processor


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("verbose", stream=io.StringIO())


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_secret_reaches_any_line(fmt: str) -> None:
    out = io.StringIO()
    configure_logging("debug", fmt=fmt, stream=out)  # type: ignore[arg-type]
    log = get_logger("agent.pipeline")

    log.info("request.received", request_id="r-1", password=SECRET)
    log.info("request.received", request_id="r-2", body={"user": "bob", "new_password": SECRET})
    log.info("request.received", request_id="r-3", items=[{"oldPassword": SECRET}])
    log.info("request.received", request_id="r-4", sealed=SecretStr(SECRET))
    log.info("request.received", request_id="r-5", blob=SecretBytes(SECRET.encode()))
    log.info("request.received", request_id="r-6", envelope=SECRET.encode())
    log.info("request.received", request_id="r-7", unicodePwd=f'"{SECRET}"'.encode("utf-16-le"))
    log.info("request.received", request_id="r-8", Authorization=f"Bearer {SECRET}")
    log.info("request.received", request_id="r-9", code=SECRET)
    try:
        raise RuntimeError(f"bind refused: password={SECRET}")
    except RuntimeError as exc:
        log.exception("request.failed", request_id="r-10", error=exc)
    # Positional %-args are merged into the text before redaction runs.
    log.warning("request.rejected reason=%s password=%s", "bad", SECRET)
    # A library logging through stdlib, with a secret in its message and its args.
    logging.getLogger("httpx").warning("POST https://relay/x?token=%s", SECRET)
    logging.getLogger("some.library").error("login with password: '%s' failed", SECRET)
    logging.getLogger("some.library").error("payload %s", {"userPassword": SECRET})
    try:
        raise ValueError({"new_password": SECRET})
    except ValueError:
        logging.getLogger("apscheduler.executors.default").exception("Job raised r-11")

    text = out.getvalue()
    # The lines were written (otherwise "no secret" would prove nothing)...
    for rid in ("r-1", "r-5", "r-9", "r-10", "r-11"):
        assert rid in text
    assert "RuntimeError" in text  # the traceback is still rendered
    assert "relay/x" in text and "some.library" in text
    assert REDACTED in text
    assert "<14 bytes>" in text
    # ...and none of them carries the secret.
    leaking = [line for line in text.splitlines() if "Hunter2" in line]
    assert leaking == []


def test_library_records_use_our_format() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    logging.getLogger("uvicorn.error").error("worker %s died", 3)
    [line] = _json_lines(out.getvalue())
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "error"
    assert line["event"] == "worker 3 died"


def test_chatty_libraries_quiet_at_info_but_not_at_debug() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    logging.getLogger("apscheduler.executors.default").info("Running job heartbeat")
    assert out.getvalue() == ""
    configure_logging("debug", stream=out)
    logging.getLogger("apscheduler.executors.default").info("Running job heartbeat")
    assert "Running job heartbeat" in out.getvalue()


def test_ldap3_is_capped_at_basic() -> None:
    ldap3_log.set_library_log_detail_level(ldap3_log.EXTENDED)
    out = io.StringIO()
    configure_logging("debug", stream=out)
    assert ldap3_log.get_library_log_detail_level() == ldap3_log.BASIC
    assert ldap3_log.get_library_log_hide_sensitive_data()

    # Someone raises it again after configuration: the handler still drops the dumps.
    ldap3_log.set_library_log_detail_level(ldap3_log.PROTOCOL)
    ldap3 = logging.getLogger("ldap3")
    ldap3.debug("PROTOCOL:MODIFY request <unicodePwd: %s> sent", "opaque")
    ldap3.debug("BASIC:Connection bound")
    text = out.getvalue()
    assert "Connection bound" in text
    assert "MODIFY request" not in text


def test_reconfiguring_replaces_only_our_handler() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", stream=first)
    configure_logging("info", stream=second)
    assert len(root.handlers) == before + 1
    get_logger("x").info("relay.down", reason="timeout")
    assert first.getvalue() == ""
    assert "relay.down" in second.getvalue()


def test_logger_used_before_configuration_follows_it_afterwards(
    capsys: pytest.CaptureFixture[str],
) -> None:
    structlog.reset_defaults()
    log = get_logger("early")
    log.info("directory.up", dc="dc1")  # default structlog config: stdout
    capsys.readouterr()
    out = io.StringIO()
    configure_logging("info", stream=out)
    log.info("directory.down", dc="dc1", reason="timeout")
    assert _json_lines(out.getvalue())[0]["event"] == "directory.down"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("new_password", True),
        ("OLD-PASSWORD", True),
        ("unicodePwd", True),
        ("userPassword", True),
        ("passwd", True),
        ("client_secret", True),
        ("access_token", True),
        ("private_key", True),
        ("Authorization", True),
        ("api_key", True),
        ("code", True),
        ("enrollment_code", True),
        ("pwdLastSet", False),
        ("minPwdLength", False),
        ("status_code", False),
        ("request_id", False),
        ("user", False),
        ("reason", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


_VALUE = st.text(
    alphabet=st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%*+/@^~"
    ),
    min_size=6,
    max_size=40,
).map(lambda s: "Zq" + s)


@given(
    value=_VALUE,
    key=st.sampled_from(["password", "new_password", "unicodePwd", "token", "api-key", "code"]),
    template=st.sampled_from(
        [
            "{k}={v}",
            "{k}: {v}",
            "{k} = '{v}'",
            '"{k}": "{v}"',
            "{{'{k}': '{v}'}}",
            "{k}=b'{v}'",
            "{k}: [b'{v}', b'{v}']",
            "x?{k}={v}&y=1",
        ]
    ),
)
def test_scrub_text_removes_secret_values_in_free_text(value: str, key: str, template: str) -> None:
    text = "error before " + template.format(k=key, v=value) + " after"
    scrubbed = scrub_text(text)
    assert value not in scrubbed
    assert scrubbed.startswith("error before ")
    assert scrubbed.endswith(" after")


def test_scrub_text_leaves_harmless_pairs() -> None:
    text = "status_code=200 pwdLastSet=0 user=bob reason=too_short"
    assert scrub_text(text) == text


@pytest.mark.parametrize(
    "text",
    ["PASSWORD=hunter2", "Private-Key: abc", "API_KEY='k'", "enroll_code=123456",
     "Authorization: Bearer tok", "x CREDENTIAL=[a, b] y", "unicodePwd: [b'\"x\"']",
     "my_Token=t,", "secretpart = s"],
)
def test_the_quick_scan_never_lets_a_secret_through(text: str) -> None:
    from wire.redaction import REDACTED, scrub_text

    scrubbed = scrub_text(text)
    assert REDACTED in scrubbed and scrubbed != text
