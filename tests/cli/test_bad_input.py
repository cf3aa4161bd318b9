"""Bad input on every command and option: exit code 2, one line on stderr that names the
problem, nothing on stdout, and not a single packet to the server the command was aimed at.

Every case runs the real CLI in a subprocess. A case whose arguments hold "{port}" gets its own
lab server on 127.0.0.1, port 0, and must leave it without a connection. The cases run a few at
a time, once per module; each is then its own test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpprobe.core.address import (
    check_domain,
    parse_address,
    parse_helo,
    parse_ip,
    parse_port,
    parse_server,
)
from smtpprobe.core.classify import classify_failure, classify_reply, explain
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.replies import extract_reply, parse_ehlo, parse_reply
from smtpprobe.errors import UsageError
from smtpprobe.lab.smtp import serve
from smtpprobe.models import Category, Failure, FailureKind, Stage

# The type of conftest's run_cli fixture.
RunCli = Callable[..., subprocess.CompletedProcess[str]]

SERVER = "127.0.0.1:{port}"
GOOD = "alice@lab.test"
ARGV_BYTES = os.fsdecode(b"\xff\xfe@example.org")  # what Python makes of non-UTF-8 argv


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    needle: str  # a word the error line must contain
    env: dict[str, str] = field(default_factory=dict)


def check(*args: str) -> tuple[str, ...]:
    return ("check", *args)


def check_at_lab(*args: str) -> tuple[str, ...]:
    """`check` aimed at a live lab server, so that any traffic would be seen."""
    return ("check", "--server", SERVER, *args)


def sweep(*args: str) -> tuple[str, ...]:
    return ("sweep", "127.0.0.1", "--ports", "{port}", *args)


def relay(*args: str) -> tuple[str, ...]:
    return ("relay", "--server", SERVER, "--from", "carol@lab.test", "--to", GOOD, *args)


CASES: tuple[Case, ...] = (
    # --- addresses -----------------------------------------------------------------------------
    Case("address-no-at", check_at_lab("alice"), "no '@'"),
    Case("address-two-at", check_at_lab("a@b@example.org"), "more than one '@'"),
    Case("address-space", check_at_lab("al ice@example.org"), "white space"),
    Case("address-unterminated-quote", check_at_lab('"alice@example.org'), "quoted"),
    Case("address-stray-quote", check_at_lab('al"ice@example.org'), "needs quoting"),
    Case("address-crlf", check_at_lab("alice@example.org\r\nRCPT TO:<x@y.example>"),
         "control character"),
    Case("address-lf", check_at_lab("alice@example.org\nDATA"), "control character"),
    # argv cannot hold a NUL (execve ends every argument at one): a file can.
    Case("address-nul", check_at_lab("--file", "{tmp}/nul.txt", "--strict"),
         "control character"),
    Case("address-escape", check_at_lab("alice\x1b[2J@example.org"), "control character"),
    Case("address-c1", check_at_lab("alice\u009b31m@example.org"), "control character"),
    Case("address-bidi", check_at_lab("alice\u202e@example.org"), "control character"),
    Case("address-not-utf8", check_at_lab(ARGV_BYTES), "not UTF-8"),
    Case("address-local-300", check_at_lab("a" * 300 + "@example.org"), "longer than"),
    Case("address-local-65", check_at_lab("a" * 65 + "@example.org"), "longer than 64"),
    Case("address-trailing-dot", check_at_lab("alice@example.org."), "dot"),
    Case("address-local-trailing-dot", check_at_lab("alice.@example.org"), "dot"),
    Case("address-double-dot", check_at_lab("al..ice@example.org"), "dot"),
    Case("address-empty-domain", check_at_lab("alice@"), "empty"),
    Case("address-empty-local", check_at_lab("@example.org"), "empty local part"),
    Case("address-bad-label", check_at_lab("alice@-bad-.example"), "invalid label"),
    Case("address-one-label", check_at_lab("alice@localhost"), "two labels"),
    Case("address-bare-ip", check_at_lab("alice@192.0.2.1"), "literal"),
    Case("address-bad-literal", check_at_lab("user@[192.0.2.999]"), "literal"),
    Case("address-bad-ipv6-literal", check_at_lab("user@[IPv6:zz::1]"), "IPv6"),
    Case("address-open-literal", check_at_lab("user@[192.0.2.1"), "invalid label"),
    Case("address-bad-idn", check_at_lab("alice@bü cher.example"), "white space"),
    Case("address-idn-invalid", check_at_lab("alice@xn--zz.example"), "internationalised"),
    Case("address-empty", check_at_lab(""), "empty"),
    Case("address-one-of-several", check_at_lab(GOOD, "bob@", "carol@lab.test"), "'bob@'"),
    Case("mail-from", check_at_lab(GOOD, "--mail-from", "no-at-sign"), "no '@'"),
    Case("mail-from-crlf", check_at_lab(GOOD, "--mail-from", "a@b.example\r\nRSET"),
         "control character"),
    # --- ports, servers, IPs -------------------------------------------------------------------
    Case("port-letters", check_at_lab(GOOD, "--port", "abc"), "--port"),
    Case("port-zero", check_at_lab(GOOD, "--port", "0"), "outside 1-65535"),
    Case("port-huge", check_at_lab(GOOD, "--port", "70000"), "outside 1-65535"),
    Case("port-negative", check_at_lab(GOOD, "--port", "-1"), "outside 1-65535"),
    Case("server-port-letters", check(GOOD, "--server", "127.0.0.1:smtp"), "not a number"),
    Case("server-port-zero", check(GOOD, "--server", "127.0.0.1:0"), "outside 1-65535"),
    Case("server-space", check(GOOD, "--server", "mx example.org"), "white space"),
    Case("server-bad-ipv6", check(GOOD, "--server", "[::1"), "'['"),
    Case("server-bad-ip", check(GOOD, "--server", "300.1.1.1"), "looks like an IP address"),
    Case("server-crlf", check(GOOD, "--server", "mx.exa\r\nmple.org"), "control"),
    Case("source-not-ip", check_at_lab(GOOD, "--source-address", "my-laptop"),
         "not an IPv4 or IPv6 address"),
    Case("source-bad-ipv4", check_at_lab(GOOD, "--source-address", "300.1.1.1"),
         "not an IPv4 or IPv6 address"),
    Case("source-bad-ipv6", check_at_lab(GOOD, "--source-address", "fe80::zz"),
         "not an IPv4 or IPv6 address"),
    Case("source-not-here", check_at_lab(GOOD, "--source-address", "192.0.2.77"),
         "192.0.2.77"),
    Case("resolver-name", check(GOOD, "--resolver", "dns.example.org"), "not an IP address"),
    Case("resolver-port", check(GOOD, "--resolver", "127.0.0.1:dns"), "--resolver"),
    Case("helo-space", check_at_lab(GOOD, "--helo", "my host"), "HELO name"),
    Case("helo-crlf", check_at_lab(GOOD, "--helo", "probe\r\nMAIL FROM:<>"), "HELO name"),
    Case("helo-bad-label", check_at_lab(GOOD, "--helo", "-probe-"), "not a valid host name"),
    # --- numbers -------------------------------------------------------------------------------
    Case("timeout-zero", check_at_lab(GOOD, "--timeout", "0"), "--timeout"),
    Case("timeout-negative", check_at_lab(GOOD, "--timeout", "-5"), "--timeout"),
    Case("timeout-nan", check_at_lab(GOOD, "--timeout", "nan"), "--timeout"),
    Case("timeout-inf", check_at_lab(GOOD, "--timeout", "inf"), "--timeout"),
    Case("timeout-letters", check_at_lab(GOOD, "--timeout", "soon"), "--timeout"),
    Case("deadline-zero", check_at_lab(GOOD, "--deadline", "0"), "--deadline"),
    Case("deadline-huge", check_at_lab(GOOD, "--deadline", "1e12"), "--deadline"),
    Case("per-mx-zero", check_at_lab(GOOD, "--per-mx", "0"), "--per-mx"),
    Case("concurrency-zero", check_at_lab(GOOD, "--concurrency", "0"), "--concurrency"),
    Case("rate-zero", check_at_lab(GOOD, "--rate", "0"), "--rate"),
    Case("rate-nan", check_at_lab(GOOD, "--rate", "nan"), "--rate"),
    # --- files ---------------------------------------------------------------------------------
    Case("file-missing", check_at_lab("--file", "{tmp}/missing.txt"), "missing.txt"),
    Case("file-directory", check_at_lab("--file", "{tmp}"), "cannot read"),
    Case("file-not-utf8", check_at_lab("--file", "{tmp}/latin1.txt"), "not UTF-8"),
    # Without --strict a bad line is reported as invalid and the rest is checked
    # (tests/cli/test_check_input.py); with it, it is a usage error before any traffic.
    Case("file-bad-line", check_at_lab("--file", "{tmp}/addresses.txt", "--strict"),
         "'bob@@lab.test'"),
    Case("cafile-missing", check_at_lab(GOOD, "--cafile", "{tmp}/missing.pem"), "--cafile"),
    Case("cafile-not-pem", check_at_lab(GOOD, "--cafile", "{tmp}/latin1.txt"), "PEM"),
    Case("cafile-directory", check_at_lab(GOOD, "--cafile", "{tmp}"), "--cafile"),
    Case("knowledge-missing", check_at_lab(GOOD, "--knowledge", "{tmp}/nope"), "nope"),
    Case("knowledge-bad-toml", check_at_lab(GOOD, "--knowledge", "{tmp}/kb-toml"), "a.toml"),
    Case("knowledge-not-utf8", check_at_lab(GOOD, "--knowledge", "{tmp}/kb-bytes"), "UTF-8"),
    Case("knowledge-unreadable", check_at_lab(GOOD, "--knowledge", "{tmp}/kb-dir"),
         "cannot read"),
    Case("knowledge-dangling", check_at_lab(GOOD, "--knowledge", "{tmp}/kb-link"),
         "cannot read"),
    Case("knowledge-bad-rule", check_at_lab(GOOD, "--knowledge", "{tmp}/kb-rule"), "rule"),
    # --- other options -------------------------------------------------------------------------
    Case("lang", check_at_lab(GOOD, "--lang", "fr"), "language"),
    Case("unknown-option", check_at_lab(GOOD, "--bogus"), "--bogus"),
    Case("no-address", check_at_lab(), "at least one address"),
    # --- explain -------------------------------------------------------------------------------
    Case("explain-stage", ("explain", "--stage", "nope", "550 5.1.1 unknown"), "unknown stage"),
    Case("explain-lang", ("explain", "--lang", "xx", "550 5.1.1 unknown"), "language"),
    Case("explain-empty", ("explain", "   "), "empty"),
    Case("explain-batch-missing", ("explain", "--batch", "{tmp}/missing.jsonl"),
         "missing.jsonl"),
    Case("explain-batch-directory", ("explain", "--batch", "{tmp}"), "cannot read"),
    Case("explain-knowledge", ("explain", "550 x", "--knowledge", "{tmp}/kb-toml"), "a.toml"),
    Case("explain-unknown-option", ("explain", "--bogus", "550 x"), "--bogus"),
    # --- sweep ---------------------------------------------------------------------------------
    Case("sweep-host-port", ("sweep", "127.0.0.1:{port}"), "without a port"),
    Case("sweep-host-space", ("sweep", "mail example.org"), "white space"),
    Case("sweep-host-crlf", ("sweep", "mail.example.org\r\nQUIT"), "control"),
    Case("sweep-ports-letters", ("sweep", "127.0.0.1", "--ports", "smtp"), "not a number"),
    Case("sweep-ports-zero", ("sweep", "127.0.0.1", "--ports", "0"), "outside 1-65535"),
    Case("sweep-ports-mode", ("sweep", "127.0.0.1", "--ports", "{port}:ssl3"), "unknown mode"),
    Case("sweep-ports-twice", ("sweep", "127.0.0.1", "--ports", "{port},{port}"), "twice"),
    Case("sweep-ports-many", ("sweep", "127.0.0.1", "--ports",
                              ",".join(str(p) for p in range(2000, 2017))), "at most 16"),
    Case("sweep-ports-empty", ("sweep", "127.0.0.1", "--ports", ","), "at least one port"),
    Case("sweep-user-no-password", sweep("--user", "carol"), "needs a password"),
    Case("sweep-password-env-unset", sweep("--user", "carol", "--password-env", "H5_UNSET"),
         "H5_UNSET"),
    Case("sweep-password-env-bad-name", sweep("--user", "carol", "--password-env", "A-B"),
         "environment variable name"),
    Case("sweep-password-file-missing",
         sweep("--user", "carol", "--password-file", "{tmp}/missing.pw"), "missing.pw"),
    Case("sweep-password-file-empty",
         sweep("--user", "carol", "--password-file", "{tmp}/empty.pw"), "empty"),
    Case("sweep-password-with-newline", sweep("--user", "carol", "--password-env", "H5_PW"),
         "CR or LF", env={"H5_PW": "pass\r\nQUIT"}),
    Case("sweep-user-crlf", sweep("--user", "carol\r\nQUIT", "--password-env", "H5_PW"),
         "control character", env={"H5_PW": "pw"}),
    Case("sweep-password-without-user", sweep("--password-env", "H5_PW"), "without --user",
         env={"H5_PW": "pw"}),
    Case("sweep-timeout", sweep("--timeout", "-1"), "--timeout"),
    Case("sweep-source", sweep("--source-address", "999.1.1.1"), "not an IPv4"),
    Case("sweep-source-not-here", sweep("--source-address", "192.0.2.77"), "192.0.2.77"),
    Case("sweep-cafile", sweep("--cafile", "{tmp}/latin1.txt"), "PEM"),
    Case("sweep-knowledge", sweep("--knowledge", "{tmp}/kb-rule"), "rule"),
    # --- relay ---------------------------------------------------------------------------------
    Case("relay-no-server", ("relay", "--from", "carol@lab.test", "--to", GOOD), "--server"),
    Case("relay-server-port", ("relay", "--server", "127.0.0.1:0"), "outside 1-65535"),
    Case("relay-tls-mode", relay("--tls", "sslv3"), "--tls"),
    Case("relay-from-bad", ("relay", "--server", SERVER, "--from", "carol", "--to", GOOD),
         "no '@'"),
    Case("relay-to-bad", ("relay", "--server", SERVER, "--from", "carol@lab.test", "--to",
                          "x@y@z.example"), "more than one '@'"),
    Case("relay-to-without-from", ("relay", "--server", SERVER, "--to", GOOD), "--from"),
    Case("relay-send-without-to", ("relay", "--server", SERVER, "--from", "c@lab.test",
                                   "--send"), "--to"),
    Case("relay-junit-no-dir", relay("--junit", "{tmp}/no/such/dir/report.xml"),
         "does not exist"),
    Case("relay-junit-directory", relay("--junit", "{tmp}"), "not a regular file"),
    Case("relay-open-relay-to", relay("--open-relay-check", "--open-relay-to", "nobody"),
         "no '@'"),
    Case("relay-user-no-password", relay("--user", "carol"), "needs a password"),
    Case("relay-deadline", relay("--deadline", "nan"), "--deadline"),
    Case("relay-helo", relay("--helo", "a b"), "HELO name"),
    Case("relay-source-not-here", relay("--source-address", "192.0.2.77"), "192.0.2.77"),
    # --- lab and demo --------------------------------------------------------------------------
    Case("lab-unknown-scenario", ("lab", "no_such_scenario"), "unknown scenario"),
    Case("lab-not-loopback", ("lab", "--host", "192.0.2.1", "mailbox"), "loopback"),
    Case("lab-port", ("lab", "--port", "70000", "mailbox"), "outside 1-65535"),
    Case("lab-nothing", ("lab",), "at least one scenario"),
    Case("demo-unknown-option", ("demo", "--bogus"), "--bogus"),
)


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    connections: int  # to the case's own lab server


def _files(tmp: Path) -> None:
    (tmp / "latin1.txt").write_bytes("alice@lab.test\nJ\xf6rg@lab.test\n".encode("latin-1"))
    (tmp / "addresses.txt").write_text("# list\nalice@lab.test\nbob@@lab.test\n")
    (tmp / "nul.txt").write_bytes(b"alice@lab.test\nali\x00ce@lab.test\n")
    (tmp / "empty.pw").write_text("")
    (tmp / "empty.pw").chmod(0o600)
    for name, content in (("kb-toml", b"[[rule]\nid ="), ("kb-bytes", b"id = '\xff\xfe'"),
                          ("kb-rule", b'[[rule]]\nid = "Bad Id"\ncategory = "nope"\n')):
        (tmp / name).mkdir()
        (tmp / name / "a.toml").write_bytes(content)
    (tmp / "kb-dir").mkdir()
    (tmp / "kb-dir" / "a.toml").mkdir()  # a directory where a rule file should be
    (tmp / "kb-link").mkdir()
    (tmp / "kb-link" / "a.toml").symlink_to(tmp / "nowhere.toml")


async def _run_case(run_cli: RunCli, case: Case, tmp: Path,
                    limit: asyncio.Semaphore) -> Outcome:
    async with limit:
        server = await serve("mailbox")
        try:
            args = [a.replace("{port}", str(server.port)).replace("{tmp}", str(tmp))
                    for a in case.args]
            # In a thread, so that this loop's lab server goes on answering meanwhile.
            done = await asyncio.to_thread(run_cli, *args, env={**case.env, "COLUMNS": "120"},
                                           timeout=60)
            await asyncio.sleep(0.05)  # a connection attempt, if any, has arrived by now
            return Outcome(done.returncode, done.stdout, done.stderr, server.connections)
        finally:
            await server.close()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli) -> dict[str, Outcome]:
    tmp = tmp_path_factory.mktemp("bad-input")
    _files(tmp)

    async def run_all() -> dict[str, Outcome]:
        limit = asyncio.Semaphore(4)
        results = await asyncio.gather(*(_run_case(run_cli, c, tmp, limit) for c in CASES))
        return {case.id: result for case, result in zip(CASES, results, strict=True)}

    return asyncio.run(run_all())


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, outcomes: dict[str, Outcome]) -> None:
    result = outcomes[case.id]
    err = result.err
    assert result.code == 2, (result.code, err, result.out[-500:])
    assert result.out == "", result.out[-500:]
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("smtpprobe: error: "), lines[0]
    assert case.needle in lines[0], lines[0]
    assert "Traceback" not in err
    assert result.connections == 0  # no traffic reached the server it was aimed at


def test_a_good_run_does_reach_the_lab_server(outcomes: dict[str, Outcome],
                                              run_cli: RunCli) -> None:
    """The zero-connection assertions mean something: the same set-up with good input does
    connect (this runs a check of its own against a lab server)."""

    async def good() -> Outcome:
        return await _run_case(run_cli, Case("good", check_at_lab(GOOD, "--json"), ""),
                               Path("."), asyncio.Semaphore(1))

    result = asyncio.run(good())
    assert result.code == 0 and result.connections == 1, result


# --- the validators themselves: any input gives a value or a UsageError ------------------------


def _one_line(exc: UsageError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "\r" not in text


TEXT = st.text(max_size=120) | st.text(st.characters(codec="utf-8"), max_size=40) | st.binary(
    max_size=40).map(os.fsdecode)


@settings(max_examples=400)
@given(TEXT)
def test_address_validator_never_raises_anything_else(text: str) -> None:
    try:
        address = parse_address(text, allow_empty=True)
    except UsageError as exc:
        _one_line(exc)
        return
    if address is None:
        return
    smtp = address.smtp
    assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in smtp)
    smtp.encode("utf-8")  # no lone surrogate survives
    assert len(smtp.encode("utf-8")) <= 256 + 7  # RFC 5321 4.5.3.1.3, plus "[IPv6:]"


@settings(max_examples=300)
@given(TEXT, st.integers(min_value=1, max_value=65535))
def test_server_port_ip_helo_domain_validators(text: str, port: int) -> None:
    for call in (lambda: parse_server(text, default_port=port), lambda: parse_port(text),
                 lambda: parse_ip(text), lambda: parse_helo(text), lambda: check_domain(text)):
        try:
            value = call()
        except UsageError as exc:
            _one_line(exc)
            continue
        shown = value[0] if isinstance(value, tuple) else str(value)
        assert not any(ord(ch) < 32 or ch.isspace() for ch in shown), shown
        shown.encode("utf-8")


def test_non_utf8_argv_is_a_usage_error_not_a_traceback() -> None:
    with pytest.raises(UsageError, match="not UTF-8"):
        parse_address(ARGV_BYTES)
    with pytest.raises(UsageError):
        parse_server(os.fsdecode(b"mx\xff.example"), default_port=25)
    with pytest.raises(UsageError):
        parse_helo(os.fsdecode(b"probe\xff"))


@pytest.mark.parametrize("text", ["a@[IPv6:2001:db8::1]", "user@[192.0.2.1]",
                                  "jörg@bücher.example", '"john doe"@example.org'])
def test_idn_and_literal_addresses_are_good_input(text: str) -> None:
    address = parse_address(text)
    assert address is not None and address.smtp.isprintable()


# --- explain takes any text: odd bytes still give valid UTF-8 JSON ----------------------------


@pytest.mark.parametrize("how", ["argv", "stdin", "batch-escape", "batch-bytes"])
def test_explain_with_bytes_that_are_not_utf8_prints_valid_json(how: str, tmp_path: Path,
                                                                run_cli: RunCli) -> None:
    args = ["explain", "--json"]
    stdin = b""
    if how == "argv":
        args.append(os.fsdecode(b"550 5.1.1 M\xfcller \xff unknown"))
    elif how == "stdin":
        stdin = b"550 5.1.1 M\xfcller \xed\xa0\x80 \xff unknown\n"
    elif how == "batch-escape":
        # A JSON escape may name a lone surrogate, which no UTF-8 output can hold.
        args += ["--batch", "-"]
        stdin = b'{"reply": "550 5.1.1 \\ud800 unknown"}\n{"reply": "450 \\udcff later"}\n'
    else:
        batch = tmp_path / "batch.jsonl"
        batch.write_bytes(b'{"reply": "550 5.1.1 M\xfcller unknown"}\n')
        args += ["--batch", str(batch)]
    # run_cli decodes strictly: output that is not valid UTF-8 fails the test there.
    done = run_cli(*args, stdin=stdin, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    text = done.stdout
    results = [json.loads(line) for line in text.splitlines() if line.strip()] \
        if how.startswith("batch") else [json.loads(text)]
    assert results and all(r["code"] in (550, 450) for r in results)


# --- parsers and classifier: any text gives a result ---------------------------------------------

ANY_TEXT = (st.text(max_size=300) | st.binary(max_size=300).map(os.fsdecode)
            | st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs"]),
                      max_size=100)
            | st.builds(lambda code, sep, rest: f"{code}{sep}{rest}",
                        st.integers(min_value=-5, max_value=1200).map(str),
                        st.sampled_from([" ", "-", "", "\n", "\r\n", "-\n"]),
                        st.text(max_size=200)))
STAGE = st.none() | st.sampled_from(list(Stage))


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, STAGE)
def test_reply_parser_and_classifier_take_any_text(kb: KnowledgeBase, text: str,
                                                   stage: Stage | None) -> None:
    reply = parse_reply(text)
    assert reply.code is None or 100 <= reply.code <= 599
    assert reply.enhanced is None or re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", reply.enhanced)
    reply.render()
    parse_ehlo(reply)
    extract_reply(text)
    finding = classify_reply(kb, stage, reply)
    assert finding.category in Category and finding.stage == stage
    assert finding.evidence.isprintable() or finding.evidence == ""
    explained, _ = explain(kb, text, stage)
    assert explained.category in Category


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(FailureKind)), ANY_TEXT, STAGE)
def test_classifier_takes_any_failure(kb: KnowledgeBase, kind: FailureKind, detail: str,
                                      stage: Stage | None) -> None:
    finding = classify_failure(kb, stage, Failure(kind, detail))
    assert finding.category in Category and finding.code is None
    assert finding.evidence.isprintable() or finding.evidence == ""


@pytest.mark.parametrize("flags", [(), ("--json",)])
def test_explain_never_echoes_terminal_escapes_from_a_pasted_bounce(flags: tuple[str, ...],
                                                                    run_cli: RunCli) -> None:
    bounce = (b"Remote server said: 550 5.1.1 \x1b[2J\x1b]0;pwned\x07 user unknown \xc2\x9b31m "
              b"[bold red]styled[/]\r\n")
    done = run_cli("explain", *flags, stdin=bounce, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "\u009b" not in done.stdout  # b"\xc2\x9b" in the UTF-8 that run_cli decoded
    assert "user unknown" in done.stdout
