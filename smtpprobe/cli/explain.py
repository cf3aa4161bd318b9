"""`smtpprobe explain`: interpret a pasted reply or bounce, offline."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli.options import (
    HeloOpt,
    JsonOpt,
    KnowledgeOpt,
    LangOpt,
    ResolverOpt,
    SourceOpt,
    load_kb,
    parse_nameservers,
    parse_stage,
    resolve_lang,
)
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from smtpprobe.core.classify import Explained
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.models import Lookup, Stage

# Lone surrogates (bytes that were not UTF-8, or JSON escapes) and control characters other
# than tab and line ends: a pasted bounce comes from a stranger, and escape sequences in it
# must not reach the terminal through our output.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(value: str) -> str:
    """Pasted text as valid, harmless Unicode: bytes that were not UTF-8 (kept by Python as
    lone surrogates, from argv or stdin), surrogates named by JSON escapes and control
    characters become U+FFFD, so that the output is valid UTF-8 and cannot steer a terminal."""
    return _UNPRINTABLE.sub("\ufffd", value)


# Budgets: a single reply or bounce (argument or stdin) is cut after INPUT_MAX characters, with
# a note (the reply of a bounce is near its top, and extraction looks no further); each line of
# --batch may hold LINE_MAX bytes, and a longer one is skipped, read in chunks of _CHUNK so
# that it is never held in memory.
INPUT_MAX = 1 << 20  # = core.replies.BOUNCE_MAX
LINE_MAX = 1 << 20
_CHUNK = 1 << 16
_LIMIT = "1 MiB"


def _note(key: str, lang: str, **values: object) -> None:
    from smtpprobe.report.words import text

    sys.stderr.write(f"smtpprobe: {text(key, lang, **values)}\n")


def _read_input(reply: str | None, lang: str) -> str:
    """The reply or bounce to explain: the argument, else stdin (read as bytes, so that no
    encoding setting of the terminal can make it fail), at most INPUT_MAX of it."""
    if reply is None:
        if sys.stdin.isatty():
            _note("explain.paste", lang)
        binary = getattr(sys.stdin, "buffer", None)
        try:
            if binary is not None:
                data = binary.read(INPUT_MAX + 1)
                reply = data.decode("utf-8", errors="replace")
                cut = len(data) > INPUT_MAX
                if cut:
                    reply = data[:INPUT_MAX].decode("utf-8", errors="replace")
            else:  # a stream without bytes underneath (a test's StringIO)
                reply = sys.stdin.read(INPUT_MAX + 1)
                cut = len(reply) > INPUT_MAX
        except OSError as exc:
            raise UsageError(f"cannot read stdin: {exc.strerror or exc}") from None
    else:
        cut = len(reply) > INPUT_MAX
    if cut:
        _note("explain.cut", lang, limit=_LIMIT)
        reply = reply[:INPUT_MAX]
    return reply


def _explain_one(kb: KnowledgeBase, reply_text: str, stage: Stage | None) -> Explained:
    from smtpprobe.core.classify import explain_pasted

    if not reply_text.strip():
        raise UsageError("the reply is empty")
    return explain_pasted(kb, _text(reply_text), stage)


def _lines(stream: BinaryIO) -> Iterator[bytes | None]:
    """The lines of a --batch source without their line ends, None for each one longer than
    LINE_MAX bytes: of such a line only LINE_MAX + 2 bytes are read at once (room for CR LF),
    the rest is skipped chunk by chunk."""
    while True:
        line = stream.readline(LINE_MAX + 2)
        if not line:
            return
        ended = line.endswith(b"\n")
        body = line[:-1] if ended else line
        body = body[:-1] if body.endswith(b"\r") else body
        if len(body) <= LINE_MAX:
            yield body
            continue
        if not ended:
            while True:
                rest = stream.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
        yield None


class _BadLine(Exception):
    """A --batch line that cannot be explained; the message is its error line's text."""


def _item(kb: KnowledgeBase, raw: bytes | None, lang: str) -> Explained | None:
    """One --batch line explained; None for a blank line. Raises _BadLine."""
    import json

    from smtpprobe.core.classify import explain_pasted
    from smtpprobe.report.words import text

    if raw is None:
        raise _BadLine(text("batch.too_long", lang, limit=_LIMIT))
    line = raw.decode("utf-8", errors="replace").strip()
    if not line:
        return None
    try:
        item = json.loads(line)
    except RecursionError:  # "[[[[..." deeper than the parser's stack
        raise _BadLine(text("batch.too_deep", lang)) from None
    except json.JSONDecodeError as exc:
        raise _BadLine(text("batch.not_json", lang, detail=str(exc).split("\n")[0],
                            column=exc.colno)) from None
    except ValueError as exc:  # a number of more digits than int() takes, ...
        raise _BadLine(text("batch.not_json", lang, detail=str(exc).split("\n")[0],
                            column=1)) from None
    if not isinstance(item, dict) or not isinstance(item.get("reply"), str):
        raise _BadLine(text("batch.not_object", lang))
    if not item["reply"].strip():
        raise _BadLine(text("batch.empty", lang))
    stage_name = item.get("stage") if isinstance(item.get("stage"), str) else None
    try:
        stage = parse_stage(stage_name)
    except UsageError:
        from smtpprobe.models import Stage

        names = ", ".join(s.value for s in Stage)
        raise _BadLine(text("batch.stage", lang, stage=repr(stage_name), names=names)) from None
    return explain_pasted(kb, _text(item["reply"]), stage)


def _batch(kb: KnowledgeBase, source: str, lang: str) -> int:
    import io
    import json

    from smtpprobe.report.json import dumps

    stream: BinaryIO
    try:
        if source != "-":
            stream = open(source, "rb")
        elif hasattr(sys.stdin, "buffer"):
            stream = sys.stdin.buffer
        else:  # a stream without bytes underneath (a test's StringIO)
            stream = io.BytesIO(sys.stdin.read().encode("utf-8", errors="replace"))
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    bad = 0
    out = sys.stdout
    with stream:
        try:
            for number, raw in enumerate(_lines(stream), 1):
                try:
                    explained = _item(kb, raw, lang)
                except _BadLine as exc:
                    bad += 1
                    out.write(json.dumps({"line": number, "error": str(exc)},
                                         ensure_ascii=False) + "\n")
                    continue
                if explained is not None:
                    out.write(dumps(_explain_doc(explained, lang), indent=None) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    if bad:
        sys.stderr.write(f"smtpprobe: error: {bad} line(s) of {source} could not be read\n")
        return exits.USAGE
    return 0


def _explain_doc(explained: Explained, lang: str) -> dict[str, Any]:
    from smtpprobe.report.json import explain_dict

    return explain_dict(explained.finding, explained.reply, lang,
                        recipient=explained.recipient,
                        reporting_host=explained.reporting_host)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


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
    lookup: Annotated[bool, typer.Option(
        "--lookup", help="Carry out the remedy's DNS lookups (blocklist, SPF/DMARC, reverse "
        "DNS) through --resolver; without it explain stays offline.")] = False,
    resolver: ResolverOpt = None,
    mail_from: Annotated[Optional[str], typer.Option(
        "--from", help="With --lookup: the sender whose domain's SPF and DMARC are looked up.",
        metavar="ADDRESS", show_default=False)] = None,
    helo: HeloOpt = None,
    source: SourceOpt = None,
) -> None:
    """Explain an SMTP reply or a pasted bounce, offline: cause, retry or not, remedy."""
    language = resolve_lang(lang)
    the_stage = parse_stage(stage)
    nameservers = parse_nameservers(resolver)
    if lookup and nameservers is None:
        raise UsageError("--lookup needs --resolver: explain asks no resolver it was not given")
    if lookup and batch is not None:
        raise UsageError("--lookup explains one reply at a time, not with --batch")
    kb = load_kb(knowledge_dir)
    if batch is not None:
        raise typer.Exit(_batch(kb, batch, language))
    explained = _explain_one(kb, _read_input(reply, language), the_stage)
    lookups = _lookups(kb, explained, nameservers, mail_from or "", helo or "", source) \
        if lookup else None

    if as_json:
        from smtpprobe.report.json import dumps

        doc = _explain_doc(explained, language)
        if lookups is not None:
            from smtpprobe.report.json import lookup_dict

            doc["lookups"] = [lookup_dict(item, language) for item in lookups]
        sys.stdout.write(dumps(doc) + "\n")
        return
    from smtpprobe.report.text import console
    from smtpprobe.report.text_explain import explain_view

    view = explain_view(explained.finding, explained.reply, language,
                        recipient=explained.recipient, reporting_host=explained.reporting_host)
    if lookups:
        # Only with --lookup: the check report's module (and its imports) is not needed else.
        from rich.console import Group

        from smtpprobe.report.text_check import lookup_lines

        view = Group(view, *lookup_lines(lookups, language))
    console().print(view)


def _lookups(kb: KnowledgeBase, explained: Explained,
             nameservers: tuple[tuple[str, int], ...] | None, mail_from: str, helo: str,
             source: str | None) -> tuple[Lookup, ...]:
    """explain --lookup: the finding's lookups (probe/lookups.py), within 30 s."""
    import asyncio

    from smtpprobe.core.certs import TrustStore
    from smtpprobe.core.classify import Classifier
    from smtpprobe.probe.lookups import confirm

    async def run() -> tuple[Lookup, ...]:
        deadline = asyncio.get_running_loop().time() + 30
        return await confirm((explained.finding,), classifier=Classifier(kb),
                             trust=TrustStore((), "none"), nameservers=nameservers,
                             timeout=5.0, deadline=deadline, helo=helo, mail_from=mail_from,
                             source_address=source)

    return asyncio.run(run())
