"""`smtpprobe check`: will the mail hosts of these addresses take mail? (never DATA)"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli import nagios as plugin
from smtpprobe.cli.options import (
    AllowPrivateOpt,
    CafileOpt,
    HeloOpt,
    Ipv4Opt,
    Ipv6Opt,
    JsonOpt,
    KnowledgeOpt,
    LangOpt,
    ProxyOpt,
    ProxyPasswordEnvOpt,
    ProxyPasswordFileOpt,
    ResolverOpt,
    SourceOpt,
    TimeoutOpt,
    VerboseOpt,
    load_kb,
    resolve_lang,
    warn_helo,
)
from smtpprobe.cli.startup import HeadStart
from smtpprobe.cli.sweep import PasswordEnvOpt, PasswordFileOpt, UserOpt
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from smtpprobe.core.knowledge.load import KnowledgeBase

def _read_address_file(path: str) -> str:
    """The whole of --file (or stdin), as text; a file larger than MAX_FILE is refused, never
    cut (a cut in mid-address would check another domain)."""
    from smtpprobe.core.addresslist import MAX_FILE

    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE:
        raise UsageError(f"{path} is larger than {MAX_FILE >> 20} MiB: split it into parts")
    try:
        return data.decode("utf-8-sig")  # Excel and Notepad start UTF-8 with a BOM
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UsageError(f"{path} is not UTF-8 text (line {line}); save it as UTF-8") from None


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog="Examples:  smtpprobe check alice@example.org  |  smtpprobe check "
             "--file list.txt --json  |  smtpprobe check -s mx.example.org bob@example.org"
             "\n\n" + exits.HELP["check"])
def check(
    ctx: typer.Context,
    addresses: Annotated[Optional[list[str]], typer.Argument(
        help="Addresses to check, e.g. alice@example.org", show_default=False)] = None,
    file: Annotated[Optional[str], typer.Option(
        "--file", help="Read addresses from FILE (one per line, 'Name <addr>' too, # "
        "comments), - for stdin. A line that is no address is reported as invalid.",
        metavar="FILE")] = None,
    column: Annotated[Optional[str], typer.Option(
        "--column", help="Read --file as CSV and take the addresses from this column (a "
        "number from 1, or the name in the header row).", metavar="N|NAME",
        show_default=False)] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Stop with a usage error (exit 2) at the first input line that is "
        "no address, before any traffic.")] = False,
    fmt: Annotated[Optional[str], typer.Option(
        "--format", help="Output: text (details for one address, a table for many), table, "
        "csv, jsonl (one JSON object per address and line; what --json gives) or json (one "
        "JSON array).", metavar="[text|table|csv|jsonl|json]", show_default=False)] = None,
    mail_from: Annotated[str, typer.Option(
        "--from", "--mail-from", "-f", help="Envelope sender for MAIL FROM; empty means the "
        "null sender <>.", metavar="ADDRESS")] = "",
    helo: HeloOpt = None,
    port: Annotated[int, typer.Option("--port", "-p", help="SMTP port of the mail hosts.",
                                      metavar="PORT")] = 25,
    server: Annotated[Optional[str], typer.Option(
        "--server", "-s", help="Skip the MX lookup and talk to HOST[:PORT].",
        metavar="HOST[:PORT]")] = None,
    timeout: TimeoutOpt = 10.0,
    deadline: Annotated[Optional[float], typer.Option(
        "--deadline", help="Seconds for the whole command, all addresses together "
        "(default: 60, plus 2 per further address).", show_default=False)] = None,
    source_address: SourceOpt = None,
    cafile: CafileOpt = None,
    no_starttls: Annotated[bool, typer.Option(
        "--no-starttls", help="Do not use STARTTLS even when offered.")] = False,
    no_pipelining: Annotated[bool, typer.Option(
        "--no-pipelining",
        help="Send one command at a time even when PIPELINING is offered.")] = False,
    tls: Annotated[str, typer.Option(
        "--tls", help="auto (implicit TLS on port 465, else STARTTLS when offered), starttls, "
        "implicit (TLS from the first byte), or none.",
        metavar="[auto|starttls|implicit|none]")] = "auto",
    user: UserOpt = None,
    password_env: PasswordEnvOpt = None,
    password_file: PasswordFileOpt = None,
    catch_all: Annotated[bool, typer.Option(
        "--catch-all", help="Also try a made-up address at the same domain.")] = False,
    resolver: ResolverOpt = None,
    allow_private: AllowPrivateOpt = False,
    proxy: ProxyOpt = None,
    proxy_password_env: ProxyPasswordEnvOpt = None,
    proxy_password_file: ProxyPasswordFileOpt = None,
    ipv4: Ipv4Opt = False,
    ipv6: Ipv6Opt = False,
    canary: Annotated[Optional[str], typer.Option(
        "--canary", help="A host known to take connections on the port (another domain's "
        "MX): when every mail host is silent, one connection to it tells whether this "
        "network blocks the port.", metavar="HOST[:PORT]", show_default=False)] = None,
    per_mx: Annotated[int, typer.Option(
        "--per-mx", help="With many addresses: connections at once to one mail host.",
        metavar="N")] = 2,
    rate: Annotated[Optional[float], typer.Option(
        "--rate", help="With many addresses: new connections and transactions per second "
        "per mail host (default: no limit).", metavar="N", show_default=False)] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", help="With many addresses: connections at once in all.",
        metavar="N")] = 20,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    knowledge_dir: KnowledgeOpt = None,
    nagios: plugin.NagiosOpt = False,
    warning: plugin.WarningOpt = None,
    critical: plugin.CriticalOpt = None,
    cert_warning: plugin.CertWarningOpt = None,
    cert_critical: plugin.CertCriticalOpt = None,
) -> None:
    """Check whether mail servers would accept mail for addresses (stops before DATA)."""
    from smtpprobe.cli.run_check import FORMATS
    from smtpprobe.core import addresslist
    from smtpprobe.models import InvalidInput
    from smtpprobe.report.words import text

    language = resolve_lang(lang)
    if fmt is not None and fmt.lower() not in FORMATS:
        raise UsageError(f"--format: unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if fmt is not None and as_json and fmt.lower() != "jsonl":
        raise UsageError("--json is --format jsonl: give one of them")
    output_format = "jsonl" if as_json else (fmt or "text").lower()
    if column is not None and file is None:
        raise UsageError("--column reads --file as CSV: give --file too")
    entries = addresslist.from_arguments(list(addresses or []))
    if file is not None:
        entries += addresslist.from_text(_read_address_file(file), column=column)
    if not entries:
        raise UsageError("give at least one address (or --file)")
    items = [addresslist.parse_entry(entry) for entry in entries]
    for entry, item in zip(entries, items, strict=True):
        where = (f"{file}:{entry.line}" if entry.line is not None
                 else text("warn.argument", language, text=repr(entry.text)))
        # A typo among the arguments is the user's to fix now; a file's bad line is reported
        # where it stands and the rest is checked (unless --strict).
        if isinstance(item, InvalidInput) and (strict or entry.line is None):
            raise UsageError(item.error if entry.line is None else f"{where}: {item.error}")
        if entry.removed:
            sys.stderr.write("smtpprobe: " + text("warn.invisible", language, where=where,
                                                  chars=", ".join(entry.removed)) + "\n")
        if isinstance(item, InvalidInput):
            sys.stderr.write("smtpprobe: " + text("warn.invalid", language, where=where,
                                                  error=item.error) + "\n")
    checked = sum(1 for item in items if not isinstance(item, InvalidInput))
    thresholds = plugin.thresholds(nagios, warning, critical, cert_warning, cert_critical)
    if thresholds is not None and (len(items) != 1 or checked != 1):
        raise UsageError("--nagios checks one address")
    from smtpprobe.cli.jobs import check_plan

    plan = check_plan(mail_from=mail_from, helo=helo, port=port, server=server,
                      timeout=timeout, deadline=deadline, source_address=source_address,
                      cafile=cafile, no_starttls=no_starttls, no_pipelining=no_pipelining,
                      tls=tls, user=user, password_env=password_env,
                      password_file=password_file, catch_all=catch_all, resolver=resolver,
                      allow_private=allow_private, proxy=proxy,
                      proxy_password_env=proxy_password_env,
                      proxy_password_file=proxy_password_file, ipv4=ipv4, ipv6=ipv6,
                      canary=canary, count=checked)
    if not 1 <= per_mx <= 100:
        raise UsageError("--per-mx must be from 1 to 100")
    if not 1 <= concurrency <= 1000:
        raise UsageError("--concurrency must be from 1 to 1000")
    if rate is not None and not 0 < rate <= 10000:
        raise UsageError("--rate must be more than 0 and at most 10000 per second")
    from smtpprobe.core.knowledge.location import ENV_VAR, find_knowledge_dir

    # Where the knowledge base is, is checked now (a usage error before any traffic). The
    # packaged one, which the test suite validates, is loaded while the first conversation
    # waits for the network; one the user names may be broken, and is loaded (and its faults
    # reported) before any traffic.
    find_knowledge_dir(knowledge_dir)
    user_kb = knowledge_dir is not None or bool(os.environ.get(ENV_VAR))
    output = "smtpprobe.report.json" if as_json else "smtpprobe.report.text_check"

    def warm_and_load() -> KnowledgeBase:
        # Runs in a thread while the first conversation waits for the network: the output
        # modules (rich is slow to import) are ready when the verdict is.
        import importlib

        importlib.import_module(output)
        return load_kb(knowledge_dir)

    kb_source = load_kb(knowledge_dir) if user_kb else warm_and_load

    from smtpprobe.cli.run_check import run_checks

    batch = None
    if checked > 1:
        from smtpprobe.probe.batch import BatchOptions

        batch = BatchOptions(per_mx=per_mx, rate=rate, concurrency=concurrency)
    warn_helo(helo, plan.options.helo, language)
    if thresholds is not None:
        import asyncio

        from smtpprobe.core.address import Address
        from smtpprobe.probe.check import Checker

        address = items[0]
        assert isinstance(address, Address)
        report = asyncio.run(Checker(kb_source, plan.options, redactor=plan.redactor,
                                     credentials=plan.credentials).check(address))
        raise typer.Exit(plugin.out(report, thresholds, language))
    raise typer.Exit(run_checks(kb_source, plan.options, items, lang=language,
                                fmt=output_format, verbose=verbose,
                                lines=[e.line for e in entries], batch=batch,
                                redactor=plan.redactor, credentials=plan.credentials,
                                head=ctx.obj if isinstance(ctx.obj, HeadStart) else None))
