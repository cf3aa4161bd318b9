"""A private Postfix for the many-address benchmark: ten domains, ten MX addresses, real limits.

The real-MTA test installation (tests/realmta) has three mailboxes per domain, too few for a
thousand different addresses. This starts a second, separate Postfix instance with its own
state directory, on 127.0.0.111-120 port 25 (one listener per MX host), serving the domains
bench0.test ... bench9.test on every listener. Mailboxes: alice, bob, postmaster and
user<digits> exist everywhere, any other local part gets "550 5.1.1 User unknown". Postfix's
own defaults apply, the ones a batch must live with: smtpd_recipient_limit 1000,
smtpd_soft_error_limit 10 (every reply slowed by 1 s after that), smtpd_hard_error_limit 20.
STARTTLS is offered with a certificate from a CA made here (`ca.pem` in the state dir).

Like tests/realmta, it runs in a private mount namespace whose /etc/resolv.conf names only the
loopback resolver 127.0.0.53, so nothing Postfix looks up leaves the machine; accepted mail is
discarded. Needs root.

usage: python bench/benchmta.py start|stop|status
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("SMTPPROBE_BENCH_MTA_DIR", "/tmp/smtpprobe-bench-mta"))
DOMAINS = tuple(f"bench{i}.test" for i in range(10))
LISTENERS = tuple(f"127.0.0.{111 + i}" for i in range(10))  # one per domain's MX host
RESOLVER = "127.0.0.53"


def mx_name(index: int) -> str:
    return f"mx.bench{index}.test"


MAIN_CF = """\
# Postfix main.cf of the smtpprobe benchmark instance (bench/benchmta.py writes it).
compatibility_level = 3.6
config_directory = {state}/postfix
queue_directory = {state}/spool
data_directory = {state}/data
maillog_file = {state}/postfix.log
maillog_file_prefixes = {state}
mail_owner = postfix
setgid_group = postdrop
inet_protocols = ipv4
inet_interfaces = loopback-only
myhostname = mx.bench0.test
mydomain = bench0.test
myorigin = $myhostname
mynetworks =
mydestination =
relay_domains =
relayhost =
biff = no
append_dot_mydomain = no
readme_directory = no
smtputf8_enable = no
alias_maps =
alias_database =
default_transport = discard:bench
relay_transport = discard:bench
local_transport = discard:bench
virtual_transport = discard:bench
virtual_mailbox_domains = {domains}
virtual_mailbox_maps = regexp:{state}/postfix/mailboxes
smtpd_helo_required = yes
smtpd_banner = $myhostname ESMTP Postfix (smtpprobe bench)
smtpd_relay_restrictions = reject_unauth_destination
smtpd_tls_security_level = may
smtpd_tls_chain_files = {state}/postfix/tls/server.pem
smtpd_tls_session_cache_database =
smtp_tls_security_level = none
# Many benchmark connections come from one client address in a short time.
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200
# A probe never sends DATA, so no message ever reaches the queue manager, which is what hands
# cleanup its flow-control tokens; without tokens cleanup waits in_flow_delay (1 s) before
# each new queue file, that is before the first accepted RCPT of every transaction. A real MX
# delivers all the time and has tokens to spare; here flow control is simply off.
in_flow_delay = 0
"""

MASTER_CF_HEAD = """\
# Postfix master.cf of the smtpprobe benchmark instance (bench/benchmta.py writes it).
"""
MASTER_CF_TAIL = """\
cleanup            unix  n       -       n       -       0       cleanup
qmgr               unix  n       -       n       300     1       qmgr
tlsmgr             unix  -       -       n       1000?   1       tlsmgr
rewrite            unix  -       -       n       -       -       trivial-rewrite
bounce             unix  -       -       n       -       0       bounce
defer              unix  -       -       n       -       0       bounce
trace              unix  -       -       n       -       0       bounce
verify             unix  -       -       n       -       1       verify
flush              unix  n       -       n       1000?   0       flush
proxymap           unix  -       -       n       -       -       proxymap
showq              unix  n       -       n       -       -       showq
error              unix  -       -       n       -       -       error
retry              unix  -       -       n       -       -       error
discard            unix  -       -       n       -       -       discard
anvil              unix  -       -       n       -       1       anvil
scache             unix  -       -       n       -       1       scache
postlog            unix-dgram n  -       n       -       1       postlogd
"""


def _conf() -> Path:
    return STATE / "postfix"


def running() -> bool:
    pid_file = STATE / "spool" / "pid" / "master.pid"
    try:
        pid = int(pid_file.read_text().strip())
        return "master" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False


def _answers(address: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, 25), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"220 ")
    except OSError:
        return False


def prepare() -> None:
    if not str(STATE).startswith("/") or any(c in str(STATE) for c in " \n\t#"):
        sys.exit(f"unusable state directory {STATE}")
    conf = _conf()
    for directory in (conf / "tls", STATE / "spool", STATE / "data"):
        directory.mkdir(parents=True, exist_ok=True)
    STATE.chmod(0o755)
    shutil.chown(STATE / "data", "postfix", "postfix")
    (conf / "main.cf").write_text(MAIN_CF.format(state=STATE, domains=", ".join(DOMAINS)))
    listeners = "".join(f"{address}:25 inet n - n - - smtpd\n  -o syslog_name=postfix/"
                        f"bench{i}\n  -o myhostname={mx_name(i)}\n"
                        for i, address in enumerate(LISTENERS))
    (conf / "master.cf").write_text(MASTER_CF_HEAD + listeners + MASTER_CF_TAIL)
    pattern = "|".join(d.replace(".", r"\.") for d in DOMAINS)
    (conf / "mailboxes").write_text(
        f"/^(alice|bob|postmaster|user[0-9]+)@({pattern})$/ ok\n")
    chain = conf / "tls" / "server.pem"
    if not chain.exists() or not (STATE / "ca.pem").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from smtpprobe.lab.tls import LabCA

        ca = LabCA.create("smtpprobe bench CA", days=3650)
        cert = ca.issue(*(mx_name(i) for i in range(len(DOMAINS))))
        old = os.umask(0o077)
        try:
            chain.write_text(cert.key_pem + cert.cert_pem)
        finally:
            os.umask(old)
        ca.write_pem(STATE / "ca.pem")
    (STATE / "resolv.conf").write_text(f"nameserver {RESOLVER}\noptions timeout:1 attempts:1\n")


def start() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/benchmta.py start needs root (port 25, a mount namespace)")
    if not running():
        prepare()
        check = subprocess.run(["postfix", "-c", str(_conf()), "check"], capture_output=True,
                               text=True)
        if check.returncode != 0:
            sys.exit(f"postfix check failed: {check.stdout}{check.stderr}")
        # A private mount namespace: Postfix resolves only through 127.0.0.53.
        started = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(STATE / "resolv.conf"),
             "postfix", "-c", str(_conf()), "start"], capture_output=True, text=True)
        if started.returncode != 0:
            sys.exit(f"postfix did not start: {started.stdout}{started.stderr}")
    for _ in range(300):
        if all(_answers(address) for address in LISTENERS):
            return
        time.sleep(0.1)
    sys.exit(f"the bench Postfix does not answer on {', '.join(LISTENERS)} "
             f"(see {STATE}/postfix.log)")


def stop() -> None:
    if running():
        subprocess.run(["postfix", "-c", str(_conf()), "stop"], capture_output=True)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "start":
        start()
        print(f"bench Postfix up on {LISTENERS[0]}-{LISTENERS[-1].rsplit('.', 1)[1]}:25 "
              f"(state {STATE})")
    elif command == "stop":
        stop()
    elif command == "status":
        up = [a for a in LISTENERS if _answers(a)]
        print(f"bench Postfix: {len(up)} of {len(LISTENERS)} listeners answer")
        sys.exit(0 if len(up) == len(LISTENERS) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
