"""Where a password comes from: an environment variable, a file, or an interactive prompt.

Never from the command line: argv is visible to every user of the machine (`ps`, /proc) and
lands in shell histories and CI logs. The order is fixed and documented (docs/sweep.md):
`--password-env VAR`, then `--password-file FILE`, then $SMTPPROBE_PASSWORD, then a prompt
when standard input is a terminal. Errors are `UsageError`s that never quote the secret.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from smtpprobe.errors import UsageError
from smtpprobe.models import Credentials

DEFAULT_ENV = "SMTPPROBE_PASSWORD"
MAX_PASSWORD_FILE = 64 * 1024
# A named pipe (`--password-file <(pass show smtp)`, a FIFO a vault agent fills) must deliver
# within this many seconds; one with no writer would otherwise block the run for ever.
FIFO_WAIT = 15.0


@dataclass(frozen=True, slots=True)
class PasswordSource:
    """How the user asked for the password to be found (validated before any traffic)."""

    env: str | None = None  # --password-env VAR
    file: str | None = None  # --password-file FILE
    prompt: bool = True  # ask on the terminal when nothing else gives a password


def _check_user(user: str) -> str:
    if not user or any(ord(ch) < 32 or ord(ch) == 127 for ch in user):
        raise UsageError("--user is empty or contains a control character")
    if len(user) > 256:
        raise UsageError("--user is longer than 256 characters")
    return user


def _check_password(password: str, where: str) -> str:
    if not password:
        raise UsageError(f"the password from {where} is empty")
    # RFC 4616 2: the PLAIN message separates its fields with NUL, so a password cannot
    # hold one; CR and LF would end the AUTH line early.
    if any(ch in password for ch in "\0\r\n"):
        raise UsageError(f"the password from {where} contains a NUL, CR or LF character")
    return password


def _read_pipe(path: str, option: str, wait: float) -> bytes:
    """A FIFO's bytes up to its end (or one byte more than a password file may hold), within
    `wait` seconds: opened without blocking, read as data arrives, the writer's close is the
    end (the first writer may not have opened it yet: that is waited for, too)."""
    import select
    import time

    until = time.monotonic() + wait
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    data = bytearray()
    writer_seen = False
    try:
        while len(data) <= MAX_PASSWORD_FILE:
            left = until - time.monotonic()
            if left <= 0:
                raise UsageError(f"{option} {path}: a pipe that gave no complete password "
                                 f"within {wait:g} s (no writer, or it never closed)")
            ready, _, _ = select.select([fd], [], [], min(left, 0.05 if not writer_seen
                                                          else left))
            if not ready:
                continue
            chunk = os.read(fd, MAX_PASSWORD_FILE + 1 - len(data))
            if chunk:
                writer_seen = True
                data += chunk
                if b"\n" in data:
                    break  # the first line is all that is used
            elif writer_seen:
                break  # the writer closed: end of the password
            else:
                # No writer yet: a FIFO without one reads as end-of-file at once.
                time.sleep(min(0.05, max(left, 0)))
    finally:
        os.close(fd)
    return bytes(data)


def read_password_file(path: str, *, warn: Callable[[str], None],
                       option: str = "--password-file", wait: float = FIFO_WAIT) -> str:
    """The first line of FILE without its line end. A file that others can read works, with a
    warning: the secret is already exposed, refusing would only break the pipeline. A named
    pipe is read for at most `wait` seconds."""
    target = Path(path)
    try:
        info = target.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISFIFO(info.st_mode):
            raise UsageError(f"{option} {path}: not a regular file")
        if stat.S_ISFIFO(info.st_mode):
            data = _read_pipe(path, option, wait)
        else:
            with target.open("rb") as handle:
                data = handle.read(MAX_PASSWORD_FILE + 1)
    except UsageError:
        raise
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or type(exc).__name__}") \
            from None
    if len(data) > MAX_PASSWORD_FILE:
        raise UsageError(f"{option} {path}: larger than {MAX_PASSWORD_FILE} bytes, "
                         f"not a password file")
    if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"warning: {option} {path} can be read by other users "
             f"(chmod 600 {path})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{option} {path}: not UTF-8 text") from None
    first = text.split("\n", 1)[0]
    first = first.removesuffix("\r")
    return _check_password(first, f"{option} {path}")


def resolve_credentials(
    user: str | None,
    source: PasswordSource,
    *,
    environ: Mapping[str, str] | None = None,
    stdin_isatty: Callable[[], bool] | None = None,
    ask: Callable[[str], str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Credentials | None:
    """The login to use, or None without --user. Raises UsageError when a password source is
    named but unusable, or when --user is given and no source yields a password."""
    env = os.environ if environ is None else environ
    say: Callable[[str], None] = warn or _stderr
    if user is None or user == "":
        if source.env or source.file:
            raise UsageError("a password source was given without --user")
        return None
    user = _check_user(user)
    if source.env and source.file:
        raise UsageError("give either --password-env or --password-file, not both")
    if source.env:
        name = source.env
        if not name.replace("_", "").isalnum() or name[0].isdigit():
            raise UsageError(f"--password-env {name!r} is not an environment variable name")
        if name not in env:
            raise UsageError(f"--password-env: the environment variable {name} is not set")
        return Credentials(user, _check_password(env[name], f"${name}"), f"${name}")
    if source.file:
        return Credentials(user, read_password_file(source.file, warn=say),
                           f"file {source.file}")
    if env.get(DEFAULT_ENV):
        return Credentials(user, _check_password(env[DEFAULT_ENV], f"${DEFAULT_ENV}"),
                           f"${DEFAULT_ENV}")
    isatty = stdin_isatty or (lambda: sys.stdin is not None and sys.stdin.isatty())
    if source.prompt and isatty():
        if ask is None:
            import getpass

            ask = getpass.getpass
        try:
            password = ask(f"Password for {user}: ")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("no password entered") from None
        return Credentials(user, _check_password(password, "the prompt"), "prompt")
    raise UsageError(f"--user {user} needs a password: use --password-env VAR, "
                     f"--password-file FILE or ${DEFAULT_ENV} (standard input is not a "
                     f"terminal, so there is no prompt)")


PROXY_ENV = "SMTPPROBE_PROXY_PASSWORD"


def resolve_proxy_password(env_name: str | None, file: str | None, *,
                           environ: Mapping[str, str] | None = None,
                           warn: Callable[[str], None] | None = None
                           ) -> tuple[str | None, str]:
    """The proxy password and where it came from: --proxy-password-env NAME, then
    --proxy-password-file FILE, then $SMTPPROBE_PROXY_PASSWORD; (None, "") when none is set.
    Never a prompt: a proxy without a login is common, and the URL names the user."""
    env = os.environ if environ is None else environ
    if env_name and file:
        raise UsageError("give either --proxy-password-env or --proxy-password-file, not both")
    if env_name:
        if not env_name.replace("_", "").isalnum() or env_name[0].isdigit():
            raise UsageError(f"--proxy-password-env {env_name!r} is not an environment "
                             f"variable name")
        if env_name not in env:
            raise UsageError(f"--proxy-password-env: the environment variable {env_name} is "
                             f"not set")
        return _check_password(env[env_name], f"${env_name}"), f"${env_name}"
    if file:
        return (read_password_file(file, warn=warn or _stderr, option="--proxy-password-file"),
                f"file {file}")
    if env.get(PROXY_ENV):
        return _check_password(env[PROXY_ENV], f"${PROXY_ENV}"), f"${PROXY_ENV}"
    return None, ""


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
