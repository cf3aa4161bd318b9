"""`smtpprobe check`: will the mail hosts of these addresses take mail? (never DATA)"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli.options import (
    CafileOpt,
    HeloOpt,
    JsonOpt,
    KnowledgeOpt,
    LangOpt,
    ResolverOpt,
    SourceOpt,
    TimeoutOpt,
    VerboseOpt,
    check_cafile,
    load_kb,
    parse_helo_option,
    parse_nameservers,
    parse_source,
    resolve_lang,
)
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from smtpprobe.core.knowledge.load import KnowledgeBase

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


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog="Examples:  smtpprobe check alice@example.org  |  smtpprobe check "
             "--file list.txt --json  |  smtpprobe check -s mx.example.org bob@example.org"
             "\n\n" + exits.HELP["check"])
def check(
    addresses: Annotated[Optional[list[str]], typer.Argument(
        help="Addresses to check, e.g. alice@example.org", show_default=False)] = None,
    file: Annotated[Optional[str], typer.Option(
        "--file", help="Read addresses from FILE (one per line, # comments), - for stdin.",
        metavar="FILE")] = None,
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
    catch_all: Annotated[bool, typer.Option(
        "--catch-all", help="Also try a made-up address at the same domain.")] = False,
    resolver: ResolverOpt = None,
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
) -> None:
    """Check whether mail servers would accept mail for addresses (stops before DATA)."""
    from smtpprobe.core import address as addr

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
    helo_name = parse_helo_option(helo)
    if not 0 < timeout <= 3600:
        raise UsageError("--timeout must be between 0 and 3600 seconds")
    if deadline is None:
        deadline = 60.0 + 2.0 * (len(parsed) - 1)
    if not 0 < deadline <= 7 * 86400:
        raise UsageError("--deadline must be more than 0 and at most a week (604800 s)")
    port = addr.parse_port(port)
    server_spec = addr.parse_server(server, default_port=port) if server else None
    source = parse_source(source_address)
    nameservers = parse_nameservers(resolver)
    if not 1 <= per_mx <= 100:
        raise UsageError("--per-mx must be from 1 to 100")
    if not 1 <= concurrency <= 1000:
        raise UsageError("--concurrency must be from 1 to 1000")
    if rate is not None and not 0 < rate <= 10000:
        raise UsageError("--rate must be more than 0 and at most 10000 per second")
    cafile_text = check_cafile(cafile)
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

    from smtpprobe.probe.check import CheckOptions

    options = CheckOptions(
        helo=helo_name, mail_from=sender.smtp if sender else "", port=port, timeout=timeout,
        deadline=deadline, source_address=source, cafile=cafile_text,
        starttls=not no_starttls, pipelining=not no_pipelining, catch_all=catch_all,
        server=server_spec, nameservers=nameservers,
    )
    from smtpprobe.cli.run_check import run_checks

    batch = None
    if len(parsed) > 1:
        from smtpprobe.probe.batch import BatchOptions

        batch = BatchOptions(per_mx=per_mx, rate=rate, concurrency=concurrency)
    raise typer.Exit(run_checks(kb_source, options, parsed, lang=language, as_json=as_json,
                                verbose=verbose, batch=batch))
