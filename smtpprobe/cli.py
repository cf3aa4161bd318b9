"""The command line: arguments -> request -> asyncio.run once -> render -> exit code.

Exit codes (docs/cli.md): 0 accepted / passed, 1 rejected / failed, 2 usage error,
3 deferred, unreachable or temporary. Usage errors are one line on stderr, before any traffic.
Heavy modules (rich rendering, aiosmtplib, dnspython, the lab) are imported only by the
commands that need them, so `--help` and `explain` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from .address import UsageError
from .knowledge import KnowledgeError
from .models import Stage

if TYPE_CHECKING:
    from .knowledge import KnowledgeBase

EXIT_USAGE = 2

app = typer.Typer(
    name="smtpprobe",
    help="Live SMTP connection tester that explains what mail servers say, and what to do.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_STAGE_ALIASES = {
    "banner": Stage.CONNECT, "greeting": Stage.CONNECT, "helo": Stage.EHLO,
    "tls": Stage.STARTTLS, "mail from": Stage.MAIL, "mail_from": Stage.MAIL,
    "rcpt to": Stage.RCPT, "rcpt_to": Stage.RCPT, "end of data": Stage.DATA,
    "rset": Stage.QUIT,
}

LangOpt = Annotated[Optional[str], typer.Option(
    "--lang", help="Output language: de or en (default: from the locale, else en).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
KnowledgeOpt = Annotated[Optional[Path], typer.Option(
    "--knowledge", help="Knowledge directory (default: $SMTPPROBE_KNOWLEDGE or the packaged one).",
    show_default=False)]


def fail_usage(message: str) -> NoReturn:
    sys.stderr.write(f"smtpprobe: error: {message}\n")
    raise typer.Exit(EXIT_USAGE)


def parse_stage(value: str | None) -> Stage | None:
    if value is None or value == "":
        return None
    key = value.strip().lower()
    if key in _STAGE_ALIASES:
        return _STAGE_ALIASES[key]
    try:
        return Stage(key)
    except ValueError:
        names = ", ".join(s.value for s in Stage)
        raise UsageError(f"unknown stage {value!r} (use one of: {names})") from None


def resolve_lang(lang: str | None) -> str:
    if lang is None:
        from .i18n import default_lang

        return default_lang()
    if lang.lower() not in ("de", "en"):
        raise UsageError(f"unknown language {lang!r} (use de or en)")
    return lang.lower()


def load_kb(path: Path | None) -> KnowledgeBase:
    from . import knowledge

    return knowledge.load(path)


# --- explain -------------------------------------------------------------------------------


def _explain_one(kb: KnowledgeBase, reply_text: str, stage: Stage | None,
                 lang: str) -> tuple[Any, Any]:
    from .classify import explain as explain_reply

    if not reply_text.strip():
        raise UsageError("the reply is empty")
    return explain_reply(kb, reply_text, stage)


def _batch(kb: KnowledgeBase, source: str, lang: str) -> int:
    from .classify import explain as explain_reply
    from .report import explain_dict

    try:
        stream = sys.stdin if source == "-" else open(source, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    bad = 0
    out = sys.stdout
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if not isinstance(item, dict) or not isinstance(item.get("reply"), str):
                    raise ValueError('each line must be an object with a "reply" string')
                if not item["reply"].strip():
                    raise ValueError("the reply is empty")
                stage = parse_stage(item.get("stage") if isinstance(item.get("stage"), str)
                                    else None)
            except (ValueError, UsageError) as exc:
                bad += 1
                out.write(json.dumps({"line": number, "error": str(exc).split("\n")[0]}) + "\n")
                continue
            finding, reply = explain_reply(kb, item["reply"], stage)
            out.write(json.dumps(explain_dict(finding, reply, lang), ensure_ascii=False) + "\n")
    if bad:
        sys.stderr.write(f"smtpprobe: error: {bad} line(s) of {source} could not be read\n")
        return EXIT_USAGE
    return 0


@app.command()
def explain(
    reply: Annotated[Optional[str], typer.Argument(
        help="The server's reply, or a bounce text. Read from stdin when omitted.",
        show_default=False)] = None,
    stage: Annotated[Optional[str], typer.Option(
        "--stage", help="Where the reply came: connect, ehlo, starttls, auth, mail, rcpt, "
        "data, quit.")] = None,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    batch: Annotated[Optional[str], typer.Option(
        "--batch", help='JSON lines {"stage": ..., "reply": ...} from FILE (or - for stdin); '
        "one JSON result per line.", metavar="FILE")] = None,
    knowledge_dir: KnowledgeOpt = None,
) -> None:
    """Explain an SMTP reply or a pasted bounce, offline: cause, retry or not, remedy."""
    language = resolve_lang(lang)
    the_stage = parse_stage(stage)
    kb = load_kb(knowledge_dir)
    if batch is not None:
        raise typer.Exit(_batch(kb, batch, language))
    if reply is None:
        if sys.stdin.isatty():
            sys.stderr.write("Paste the reply or bounce, then Ctrl-D:\n")
        reply = sys.stdin.read(1 << 20)
    finding, parsed = _explain_one(kb, reply, the_stage, language)
    if as_json:
        from .report import dumps, explain_dict

        sys.stdout.write(dumps(explain_dict(finding, parsed, language)) + "\n")
        return
    from .redact import Redactor
    from .render import console, finding_panel

    console().print(finding_panel(finding, language, Redactor(), reply=parsed))


# --- check ---------------------------------------------------------------------------------


def _read_address_file(path: str) -> list[str]:
    try:
        handle = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with handle:
            lines = handle.read(64 << 20).splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@app.command()
def check(
    addresses: Annotated[Optional[list[str]], typer.Argument(
        help="Addresses to check, e.g. alice@example.org", show_default=False)] = None,
    file: Annotated[Optional[str], typer.Option(
        "--file", help="Read addresses from FILE (one per line, # comments), - for stdin.",
        metavar="FILE")] = None,
    mail_from: Annotated[str, typer.Option(
        "--mail-from", help="Envelope sender for MAIL FROM; empty means the null sender <>.")] = "",
    helo: Annotated[Optional[str], typer.Option(
        "--helo", help="Name to send in EHLO (default: this machine's name).")] = None,
    port: Annotated[int, typer.Option("--port", help="SMTP port of the mail hosts.")] = 25,
    server: Annotated[Optional[str], typer.Option(
        "--server", help="Skip the MX lookup and talk to HOST[:PORT].", metavar="HOST[:PORT]")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for each step.")] = 10.0,
    deadline: Annotated[float, typer.Option(
        "--deadline", help="Seconds for the whole check of one address.")] = 60.0,
    source_address: Annotated[Optional[str], typer.Option(
        "--source-address", help="Local IP address to connect from.", metavar="IP")] = None,
    cafile: Annotated[Optional[Path], typer.Option(
        "--cafile", help="PEM file of CA certificates to trust instead of the system store.")] = None,
    no_starttls: Annotated[bool, typer.Option(
        "--no-starttls", help="Do not use STARTTLS even when offered.")] = False,
    no_pipelining: Annotated[bool, typer.Option(
        "--no-pipelining", help="Send one command at a time even when PIPELINING is offered.")] = False,
    catch_all: Annotated[bool, typer.Option(
        "--catch-all", help="Also try a made-up address at the same domain.")] = False,
    resolver: Annotated[Optional[str], typer.Option(
        "--resolver", help="DNS server to use instead of the system's.", metavar="HOST[:PORT]")] = None,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show the full transcript.")] = False,
    knowledge_dir: KnowledgeOpt = None,
) -> None:
    """Check whether mail servers would accept mail for addresses (stops before DATA)."""
    from . import address as addr

    language = resolve_lang(lang)
    raw = list(addresses or [])
    if file is not None:
        raw += _read_address_file(file)
    if not raw:
        raise UsageError("give at least one address (or --file)")
    parsed = []
    for item in raw:
        one = addr.parse_address(item)
        assert one is not None
        parsed.append(one)
    sender = addr.parse_address(mail_from, allow_empty=True)
    helo_name = addr.parse_helo(helo) if helo else _default_helo()
    if not 0 < timeout <= 3600:
        raise UsageError("--timeout must be between 0 and 3600 seconds")
    if not 0 < deadline <= 86400:
        raise UsageError("--deadline must be between 0 and 86400 seconds")
    port = addr.parse_port(port)
    server_spec = addr.parse_server(server, default_port=port) if server else None
    source = addr.parse_ip(source_address, what="source address") if source_address else None
    nameservers = None
    if resolver:
        from .dns import parse_resolver

        try:
            nameservers = (parse_resolver(resolver),)
        except ValueError as exc:
            raise UsageError(f"--resolver: {exc}") from None
    cafile_text = _check_cafile(cafile)
    kb = load_kb(knowledge_dir)

    from .probe import CheckOptions

    options = CheckOptions(
        helo=helo_name, mail_from=sender.smtp if sender else "", port=port, timeout=timeout,
        deadline=deadline, source_address=source, cafile=cafile_text,
        starttls=not no_starttls, pipelining=not no_pipelining, catch_all=catch_all,
        server=server_spec, nameservers=nameservers,
    )
    from .runner import run_checks

    raise typer.Exit(run_checks(kb, options, parsed, lang=language, as_json=as_json,
                                verbose=verbose))


def _check_cafile(cafile: Path | None) -> str | None:
    if cafile is None:
        return None
    from .certs import load_trust_store

    try:
        store = load_trust_store(str(cafile))
    except OSError as exc:
        raise UsageError(f"--cafile {cafile}: {exc.strerror or exc}") from None
    except ValueError:
        raise UsageError(f"--cafile {cafile}: no PEM certificates in it") from None
    if not store.roots:
        raise UsageError(f"--cafile {cafile}: no PEM certificates in it")
    return str(cafile)


def _default_helo() -> str:
    import socket

    from .address import UsageError as _UE
    from .address import check_host

    name = socket.gethostname()
    try:
        return check_host(name)
    except _UE:
        return "localhost"


# --- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except UsageError as exc:
        sys.stderr.write(f"smtpprobe: error: {exc}\n")
        sys.exit(EXIT_USAGE)
    except KnowledgeError as exc:
        sys.stderr.write(f"smtpprobe: error: knowledge base: {exc}\n")
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.stderr.write("smtpprobe: interrupted\n")
        sys.exit(130)
