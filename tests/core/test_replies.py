from hypothesis import given, settings
from hypothesis import strategies as st

from smtpprobe.core.replies import (
    extract_reply,
    find_enhanced,
    from_code_and_message,
    parse_ehlo,
    parse_reply,
)
from smtpprobe.models import Stage


def test_single_line_with_enhanced_code() -> None:
    reply = parse_reply("550 5.1.1 <bob@example.org>: Recipient address rejected")
    assert reply.code == 550
    assert reply.enhanced == "5.1.1"
    assert reply.lines == ("5.1.1 <bob@example.org>: Recipient address rejected",)


def test_multi_line_dash_form_joins_lines() -> None:
    text = ("550-5.1.1 The email account that you tried to reach does not exist.\r\n"
            "550-5.1.1 Please try double-checking the recipient's email address\r\n"
            "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser")
    reply = parse_reply(text)
    assert reply.code == 550 and reply.enhanced == "5.1.1"
    assert len(reply.lines) == 3
    assert reply.render().splitlines()[0].startswith("550-5.1.1 The email")
    assert reply.render().splitlines()[-1].startswith("550 5.1.1 https")


def test_hash_form_of_enhanced_code() -> None:
    assert parse_reply("550 #5.1.0 Address rejected.").enhanced == "5.1.0"
    assert find_enhanced("smtp; 5.4.4 (#4.4.2)") == "5.4.4"


def test_enhanced_code_not_taken_from_ip_addresses_or_versions() -> None:
    assert find_enhanced("250 mail.example.org 192.0.2.1 ready") is None
    assert find_enhanced("220 ESMTP Exim 4.96.2 ready") is None
    assert find_enhanced("421 4.4.2 timeout") == "4.4.2"


def test_reply_without_enhanced_code() -> None:
    reply = parse_reply("452 Requested action not taken: insufficient system storage")
    assert reply.code == 452 and reply.enhanced is None


def test_text_without_code_keeps_text() -> None:
    reply = parse_reply("User unknown")
    assert reply.code is None and reply.text == "User unknown"


def test_code_later_in_line() -> None:
    reply = parse_reply("host mx.example.net[192.0.2.1] said: 550 5.1.1 <a@example.net>: no")
    assert reply.code == 550 and reply.enhanced == "5.1.1"


def test_not_three_digits_is_no_code() -> None:
    assert parse_reply("5500 no").code is None
    assert parse_reply("55 no").code is None
    assert parse_reply("999 odd").code is None


def test_from_code_and_message_aiosmtplib_form() -> None:
    reply = from_code_and_message(250, "mx.example.org\nPIPELINING\nSTARTTLS")
    assert reply.lines == ("mx.example.org", "PIPELINING", "STARTTLS")
    caps = parse_ehlo(reply)
    assert caps.pipelining and caps.starttls and not caps.has("AUTH")


def test_parse_ehlo_auth_forms() -> None:
    caps = parse_ehlo(from_code_and_message(
        250, "mx\nAUTH PLAIN LOGIN\nAUTH=LOGIN CRAM-MD5\nSIZE 10240000\n8BITMIME"))
    assert caps.auth_mechanisms == ("PLAIN", "LOGIN", "CRAM-MD5")
    assert caps.size_limit == 10240000


def test_extract_from_dsn() -> None:
    bounce = """Reporting-MTA: dns; mx.example.org
Final-Recipient: rfc822; bob@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address
    rejected: User unknown in virtual alias table
"""
    found = extract_reply(bounce)
    assert found.from_bounce
    assert found.reply_text.startswith("550 5.1.1")
    assert "User unknown in virtual alias table" in found.reply_text


def test_extract_postfix_stage_from_bounce() -> None:
    text = ("<bob@example.net>: host mx.example.net[192.0.2.1] said: 552 5.2.2 <bob@example.net>:"
            " Mailbox full (in reply to RCPT TO command)")
    found = extract_reply(text)
    assert found.stage is Stage.RCPT
    assert parse_reply(found.reply_text).code == 552


def test_extract_exchange_ndr() -> None:
    text = ("Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not "
            "found by SMTP address lookup'")
    reply = parse_reply(extract_reply(text).reply_text)
    assert reply.code == 550 and reply.enhanced == "5.1.10"


def test_extract_status_only() -> None:
    found = extract_reply("Action: failed\nStatus: 4.2.2\n")
    assert find_enhanced(found.reply_text) == "4.2.2"


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_parsers_never_raise(text: str) -> None:
    reply = parse_reply(text)
    assert reply.code is None or 100 <= reply.code <= 599
    reply.render()
    extract_reply(text)
    parse_ehlo(reply)


def test_wrapped_postfix_bounce_keeps_whole_reply_and_stage() -> None:
    text = ("<sam@example.net>: host mail.example.net[198.51.100.12] said: 552 5.2.2\n"
            "    <sam@example.net>: Recipient address rejected: Mailbox full (in reply to\n"
            "    RCPT TO command)")
    found = extract_reply(text)
    assert found.stage is Stage.RCPT
    assert found.reply_text == ("552 5.2.2 <sam@example.net>: Recipient address rejected: "
                                "Mailbox full")


def test_exim_bounce_reply_on_next_line() -> None:
    text = ("  zoe@example.net\n    host mx.example.net [198.51.100.70]\n"
            "    SMTP error from remote mail server after end of data:\n"
            "    552 Message size exceeds maximum permitted\n")
    found = extract_reply(text)
    assert found.stage is Stage.DATA
    assert found.reply_text == "552 Message size exceeds maximum permitted"


def test_refused_to_talk_is_the_greeting() -> None:
    text = ("<ilse@example.com>: host mx.example.com[192.0.2.197] refused to talk to me:\n"
            "    554 IP=198.51.100.44 - A problem occurred. (Ask your postmaster for help or to\n"
            "    contact postmaster@example.com to clarify.) (BL)")
    found = extract_reply(text)
    assert found.stage is Stage.CONNECT
    assert found.reply_text.startswith("554 IP=") and found.reply_text.endswith("(BL)")


def test_sendmail_transcript_and_gmail_next_line() -> None:
    transcript = ">>> RCPT To:<a@example.org>\n<<< 550 5.1.1 <a@example.org>... User unknown\n"
    assert extract_reply(transcript).reply_text.startswith("550 5.1.1")
    gmail = ("The response from the remote server was:\n"
             "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown\n")
    assert extract_reply(gmail).reply_text.startswith("550 5.1.1")


def test_extract_german_exchange_ndr_line() -> None:
    text = ("Generierender Server: FR3P281MB0934.DEUP281.PROD.OUTLOOK.COM\n\nanna@kunde.example\n"
            "Remoteserver hat '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
            "by SMTP address lookup' zurückgegeben\n")
    found = extract_reply(text)
    assert found.reply_text.startswith("550 5.1.10 RESOLVER") and found.reply_text.endswith(
        "lookup")
    assert found.recipient == "anna@kunde.example"
    assert found.reporting_host == "FR3P281MB0934.DEUP281.PROD.OUTLOOK.COM"


def test_sendmail_transcript_names_the_stage() -> None:
    transcript = ">>> DATA\n<<< 354 go ahead\n>>> .\n<<< 554 5.7.1 Message refused\n"
    found = extract_reply(transcript)
    assert found.reply_text == "554 5.7.1 Message refused"
    assert found.stage is Stage.DATA
