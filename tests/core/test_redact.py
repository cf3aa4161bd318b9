import base64

from smtpprobe.core.redact import MASK, Redactor


def test_every_form_is_masked() -> None:
    user, secret = "probe@example.org", "c0rrect-Horse_battery"
    redact = Redactor([(user, secret)])
    forms = [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0{user}\0{secret}".encode()).decode(),
        secret.encode().hex(),
    ]
    for form in forms:
        out = redact(f"535 5.7.8 echo {form} end")
        assert form not in out and MASK in out
    # Inside an arbitrary base64 blob, at any alignment.
    for prefix in (b"", b"x", b"xy", b"xyz"):
        blob = base64.b64encode(prefix + secret.encode() + b"tail").decode()
        assert base64.b64encode(secret.encode()).decode()[4:-4] not in redact(blob)


def test_empty_redactor_changes_nothing() -> None:
    redact = Redactor()
    assert not redact
    assert redact("anything") == "anything"
    assert "Pass" not in repr(Redactor([("u", "Passw0rd!")]))
