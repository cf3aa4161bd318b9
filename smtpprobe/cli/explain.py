"""`smtpprobe explain`: interpret a pasted reply or bounce, offline."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli.options import (
    JsonOpt,
    KnowledgeOpt,
    LangOpt,
    load_kb,
    parse_stage,
    resolve_lang,
)
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.models import Stage

# Lone surrogates (bytes that were not UTF-8, or JSON escapes) and control characters other
# than tab and line ends: a pasted bounce comes from a stranger, and escape sequences in it
# must not reach the terminal through our output.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(value: str) -> str:
    """Pasted text as valid, harmless Unicode: bytes that were not UTF-8 (kept by Python as
    lone surrogates, from argv or stdin), surrogates named by JSON escapes and control
    characters become U+FFFD, so that the output is valid UTF-8 and cannot steer a terminal."""
    return _UNPRINTABLE.sub("\ufffd", value)


def _explain_one(kb: KnowledgeBase, reply_text: str, stage: Stage | None,
                 lang: str) -> tuple[Any, Any]:
    from smtpprobe.core.classify import explain as explain_reply

    if not reply_text.strip():
        raise UsageError("the reply is empty")
    return explain_reply(kb, _text(reply_text), stage)


def _batch(kb: KnowledgeBase, source: str, lang: str) -> int:
    import json

    from smtpprobe.core.classify import explain as explain_reply
    from smtpprobe.core.redact import Redactor
    from smtpprobe.report.json import dumps, explain_dict

    try:
        stream = sys.stdin if source == "-" else open(source, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    bad = 0
    out = sys.stdout
    nothing = Redactor()  # explain knows no secret; the output still goes the one way
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
            finding, reply = explain_reply(kb, _text(item["reply"]), stage)
            out.write(dumps(explain_dict(finding, reply, lang), nothing, indent=None) + "\n")
    if bad:
        sys.stderr.write(f"smtpprobe: error: {bad} line(s) of {source} could not be read\n")
        return exits.USAGE
    return 0


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
    from smtpprobe.core.redact import Redactor

    if as_json:
        from smtpprobe.report.json import dumps, explain_dict

        sys.stdout.write(dumps(explain_dict(finding, parsed, language), Redactor()) + "\n")
        return
    from smtpprobe.report.text import console
    from smtpprobe.report.text_explain import explain_view

    console().print(explain_view(finding, parsed, language, Redactor()))


