"""Options -> flow, once for every way of running check, relay and sweep: the commands
(cli/check.py, cli/relay.py, cli/sweep.py) and the exporter's modules (cli/exporter.py).

A plan is everything but the target, validated before any traffic (a `UsageError`, one
line): the flow's options value, the login and the redactor that masks it. `target(text)`
validates the target the same way (an address for check, HOST[:PORT] for relay, a host for
sweep) and `probe(target, ...)` runs the flow in the caller's event loop with a knowledge
base and a trust store the caller loaded once. The builders take the command's own parameter
names, so the exporter can map a module's keys (the long options) onto them (cli/exporter.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from smtpprobe.cli.options import (
    check_cafile,
    parse_auth_mech,
    parse_family,
    parse_helo_option,
    parse_nameservers,
    parse_proxy,
    parse_source,
)
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from smtpprobe.core.address import Address
    from smtpprobe.core.certs import TrustStore
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.core.redact import Redactor
    from smtpprobe.models import (
        CheckReport,
        Credentials,
        DomainReport,
        Proxy,
        RelayReport,
        SweepReport,
    )
    from smtpprobe.probe.check import CheckOptions
    from smtpprobe.probe.relay import RelayOptions
    from smtpprobe.probe.sweep import SweepOptions

    Report = CheckReport | RelayReport | SweepReport | DomainReport



class Plan(Protocol):
    """What the exporter needs of a job: its target parser and its flow."""

    job: str
    cafile: str | None

    def target(self, text: str) -> Any: ...

    async def probe(self, target: Any, *, kb: KnowledgeBase, trust: TrustStore,
                    budget: float) -> Report: ...


def _login(user: str | None, password_env: str | None, password_file: str | None, *,
           interactive: bool) -> tuple[Credentials | None, Redactor]:
    """The login and the redactor for its secret. `interactive=False` (the exporter): only
    --password-env or --password-file, never $SMTPPROBE_PASSWORD or a prompt."""
    from smtpprobe.cli.secrets import PasswordSource, resolve_credentials
    from smtpprobe.core.redact import Redactor

    if not interactive and user and not (password_env or password_file):
        raise UsageError(f"user {user} needs password_env or password_file")
    source = PasswordSource(env=password_env, file=password_file, prompt=interactive)
    creds = resolve_credentials(user, source, environ=None if interactive else {
        k: v for k, v in os.environ.items() if k == password_env})
    redact = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    return creds, redact


def check_numbers(timeout: float, deadline: float) -> None:
    if not 0 < timeout <= 3600:
        raise UsageError("--timeout must be between 0 and 3600 seconds")
    if not 0 < deadline <= 86400:
        raise UsageError("--deadline must be between 0 and 86400 seconds")


def _session(*, timeout: float, deadline: float, helo: str | None,
             source_address: str | None, resolver: str | None, cafile: Path | None,
             user: str | None, password_env: str | None, password_file: str | None,
             interactive: bool) -> tuple[str, str | None, tuple[tuple[str, int], ...] | None,
                                         str | None, Credentials | None, Redactor]:
    """What relay and sweep validate alike: times, EHLO name, source address, resolver, CA
    file, and the login with its redactor."""
    check_numbers(timeout, deadline)
    return (parse_helo_option(helo), parse_source(source_address), parse_nameservers(resolver),
            check_cafile(cafile),
            *_login(user, password_env, password_file, interactive=interactive))


def _cap(deadline: float, budget: float) -> float:
    """The time a probe may take: its own deadline, at most what the caller has left."""
    return max(0.1, min(deadline, budget))


# --- check --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckPlan:
    options: CheckOptions
    credentials: Credentials | None
    redactor: Redactor
    cafile: str | None
    job: str = "check"

    def target(self, text: str) -> Address:
        from smtpprobe.core.address import parse_address

        address = parse_address(text)
        if address is None:
            raise UsageError("the target is empty: give an address")
        return address

    async def probe(self, target: Address, *, kb: KnowledgeBase, trust: TrustStore,
                    budget: float) -> CheckReport:
        from smtpprobe.probe.check import Checker

        checker = Checker(kb, self.options, trust=trust, redactor=self.redactor,
                          credentials=self.credentials)
        import asyncio  # not at import: `smtpprobe --help` loads this module

        deadline = asyncio.get_running_loop().time() + _cap(self.options.deadline, budget)
        return await checker.check(target, deadline=deadline)


def check_plan(*, mail_from: str, helo: str | None, port: int, server: str | None,
               timeout: float, deadline: float | None, source_address: str | None,
               cafile: Path | None, no_starttls: bool, no_pipelining: bool, tls: str,
               user: str | None, password_env: str | None, password_file: str | None,
               catch_all: bool, resolver: str | None, allow_private: bool,
               proxy: str | None = None, proxy_password_env: str | None = None,
               proxy_password_file: str | None = None, ipv4: bool = False,
               ipv6: bool = False, canary: str | None = None,
               count: int = 1, interactive: bool = True) -> CheckPlan:
    """`check`'s options for `count` addresses (the default deadline grows with them)."""
    from smtpprobe.core import address as addr

    sender = addr.parse_address(mail_from, allow_empty=True)
    helo_name = parse_helo_option(helo)
    if not 0 < timeout <= 3600:
        raise UsageError("--timeout must be between 0 and 3600 seconds")
    if deadline is None:
        # 60 s, and 2 s for each further address, at most the longest deadline there is.
        deadline = min(60.0 + 2.0 * max(count - 1, 0), 7 * 86400.0)
    if not 0 < deadline <= 7 * 86400:
        raise UsageError("--deadline must be more than 0 and at most a week (604800 s)")
    port = addr.parse_port(port)
    server_spec = addr.parse_server(server, default_port=port) if server else None
    source = parse_source(source_address)
    nameservers = parse_nameservers(resolver)
    proxy_spec = parse_proxy(proxy, proxy_password_env, proxy_password_file)
    family = parse_family(ipv4, ipv6)
    canary_spec = addr.parse_server(canary, default_port=port) if canary else None
    cafile_text = check_cafile(cafile)
    mode = tls.lower()
    if mode not in ("auto", "starttls", "implicit", "none"):
        raise UsageError(f"--tls: unknown mode {tls!r} (use auto, starttls, implicit or none)")
    if no_starttls and mode not in ("auto", "none"):
        raise UsageError(f"--no-starttls contradicts --tls {tls}")
    # The port actually spoken to: --server's, else --port. 465 is implicit TLS (RFC 8314
    # 3.3): without it a check of 465 would wait for a greeting that never comes in clear.
    target_port = server_spec[1] if server_spec else port
    implicit = mode == "implicit" or (mode == "auto" and target_port == 465)
    use_starttls = not no_starttls and mode in ("auto", "starttls") and not implicit
    creds, redact = _login(user, password_env, password_file, interactive=interactive)
    from smtpprobe.probe.check import CheckOptions

    options = CheckOptions(
        helo=helo_name, mail_from=sender.smtp if sender else "", port=port, timeout=timeout,
        deadline=deadline, source_address=source, cafile=cafile_text,
        allow_private=allow_private,
        starttls=use_starttls, implicit_tls=implicit, pipelining=not no_pipelining,
        catch_all=catch_all,
        server=server_spec, nameservers=nameservers,
        proxy=proxy_spec, family=family, canary=canary_spec,
    )
    return CheckPlan(options, creds, redact, cafile_text)


# --- relay --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayPlan:
    options: RelayOptions  # host and port come with the target
    credentials: Credentials | None
    redactor: Redactor
    cafile: str | None
    job: str = "relay"

    def target(self, text: str) -> tuple[str, int]:
        from smtpprobe.cli.relay import DEFAULT_PORT
        from smtpprobe.core.address import parse_server

        if not text.strip():
            raise UsageError("the target is empty: give the relay as HOST[:PORT]")
        return parse_server(text, default_port=DEFAULT_PORT)

    def options_for(self, target: tuple[str, int]) -> RelayOptions:
        return replace(self.options, host=target[0], port=target[1])

    async def probe(self, target: tuple[str, int], *, kb: KnowledgeBase, trust: TrustStore,
                    budget: float) -> RelayReport:
        from smtpprobe.probe.relay import Relay

        options = self.options_for(target)
        options = replace(options, deadline=_cap(options.deadline, budget))
        return await Relay(kb, options, trust=trust, redactor=self.redactor,
                           credentials=self.credentials).run()


def relay_plan(*, tls: str, user: str | None, password_env: str | None,
               password_file: str | None, mail_from: str | None, to: list[str] | None,
               send: bool, open_relay_check: bool, open_relay_from: str | None,
               open_relay_to: str | None, allow_plaintext_auth: bool, allow_old_tls: bool,
               no_verify: bool, helo: str | None, timeout: float, deadline: float,
               source_address: str | None, cafile: Path | None, resolver: str | None,
               allow_private: bool, proxy: str | None = None,
               proxy_password_env: str | None = None, proxy_password_file: str | None = None,
               ipv4: bool = False, ipv6: bool = False, auth_mech: str | None = None,
               interactive: bool = True) -> RelayPlan:
    from smtpprobe.core import address as addr
    from smtpprobe.probe.relay import OPEN_RELAY_FROM, OPEN_RELAY_TO, TLS_MODES, RelayOptions

    tls_mode = tls.strip().lower()
    if tls_mode not in TLS_MODES:
        raise UsageError(f"--tls {tls!r}: use one of {', '.join(TLS_MODES)}")
    sender = addr.parse_address(mail_from) if mail_from else None
    recipients = [addr.parse_address(r) for r in to or ()]
    if recipients and sender is None:
        raise UsageError("--to needs --from (the envelope sender for MAIL FROM)")
    if send and not recipients:
        raise UsageError("--send needs at least one --to")
    relay_from = addr.parse_address(open_relay_from or OPEN_RELAY_FROM)
    relay_to = addr.parse_address(open_relay_to or OPEN_RELAY_TO)
    assert relay_from is not None and relay_to is not None
    (helo_name, source, nameservers, cafile_text, creds, redact) = _session(
        timeout=timeout, deadline=deadline, helo=helo, source_address=source_address,
        resolver=resolver, cafile=cafile, user=user, password_env=password_env,
        password_file=password_file, interactive=interactive)
    options = RelayOptions(
        host="", port=587, tls=tls_mode, helo=helo_name,  # host and port: the target's
        mail_from=sender.smtp if sender else None,
        recipients=tuple(r.smtp for r in recipients if r is not None), send=send,
        open_relay_check=open_relay_check, open_relay_from=relay_from.smtp,
        open_relay_to=relay_to.smtp, timeout=timeout, deadline=deadline,
        allow_plaintext_auth=allow_plaintext_auth, allow_old_tls=allow_old_tls,
        verify=not no_verify,
        nameservers=nameservers, source_address=source, allow_private=allow_private,
        proxy=parse_proxy(proxy, proxy_password_env, proxy_password_file),
        family=parse_family(ipv4, ipv6), auth_mech=parse_auth_mech(auth_mech, user),
    )
    return RelayPlan(options, creds, redact, cafile_text)


# --- sweep --------------------------------------------------------------------------------


def parse_sweep_target(host: str) -> str:
    """The server to sweep: a host name or an IP address, without a port."""
    from smtpprobe.core.address import check_host, is_ip

    spec = host.strip()
    if spec.startswith("[") and spec.endswith("]"):
        spec = spec[1:-1]
    if is_ip(spec):
        return str(spec)
    if ":" in spec:
        raise UsageError(f"sweep takes a host without a port ({host!r}); choose ports with "
                         f"--ports")
    return check_host(spec)


@dataclass(frozen=True, slots=True)
class SweepPlan:
    options: SweepOptions  # the host comes with the target
    credentials: Credentials | None
    redactor: Redactor
    cafile: str | None
    job: str = "sweep"

    def target(self, text: str) -> str:
        return parse_sweep_target(text)

    async def probe(self, target: str, *, kb: KnowledgeBase, trust: TrustStore,
                    budget: float) -> SweepReport:
        from smtpprobe.probe.sweep import Sweeper

        options = replace(self.options, host=target,
                          deadline=_cap(self.options.deadline, budget))
        return await Sweeper(kb, options, trust=trust, redactor=self.redactor,
                             credentials=self.credentials).sweep()


def sweep_plan(*, ports: str, user: str | None, password_env: str | None,
               password_file: str | None, allow_plaintext_auth: bool, allow_old_tls: bool,
               no_verify: bool, helo: str | None, timeout: float, deadline: float,
               source_address: str | None, cafile: Path | None, resolver: str | None,
               allow_private: bool, proxy: str | None = None,
               proxy_password_env: str | None = None, proxy_password_file: str | None = None,
               ipv4: bool = False, ipv6: bool = False, auth_mech: str | None = None,
               interactive: bool = True) -> SweepPlan:
    from smtpprobe.probe.sweep import SweepOptions, parse_ports

    port_specs = parse_ports(ports)
    (helo_name, source, nameservers, cafile_text, creds, redact) = _session(
        timeout=timeout, deadline=deadline, helo=helo, source_address=source_address,
        resolver=resolver, cafile=cafile, user=user, password_env=password_env,
        password_file=password_file, interactive=interactive)
    options = SweepOptions(host="", ports=port_specs, helo=helo_name, timeout=timeout,
                           deadline=deadline, allow_plaintext_auth=allow_plaintext_auth,
                           allow_old_tls=allow_old_tls, verify=not no_verify,
                           nameservers=nameservers, source_address=source,
                           allow_private=allow_private,
                           proxy=parse_proxy(proxy, proxy_password_env, proxy_password_file),
                           family=parse_family(ipv4, ipv6),
                           auth_mech=parse_auth_mech(auth_mech, user))
    return SweepPlan(options, creds, redact, cafile_text)


def load_trust(cafile: str | Path | None) -> TrustStore:
    """The trust store of --cafile (checked first), or the system's."""
    from smtpprobe.core.certs import load_trust_store

    checked = check_cafile(Path(cafile)) if cafile is not None else None
    try:
        return load_trust_store(checked)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--cafile {cafile}: {exc}") from None


# --- domain -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainPlan:
    """`domain`'s options (cli/domain.py validates each the same way)."""

    nameservers: tuple[tuple[str, int], ...] | None
    timeout: float
    deadline: float
    helo: str
    source_address: str | None
    allow_private: bool
    port: int
    ips: tuple[str, ...]
    selectors: tuple[str, ...]
    dnsbl_zones: tuple[str, ...] | None  # None: the default public zones
    open_relay: bool
    cafile: str | None
    job: str = "domain"
    proxy: Proxy | None = None  # --proxy: the SMTP conversations go through it
    family: int | None = None  # -4 / -6

    def target(self, text: str) -> str:
        from smtpprobe.cli.domain import _domain

        _domain(text.strip())
        return text.strip()

    async def probe(self, target: str, *, kb: KnowledgeBase, trust: TrustStore,
                    budget: float) -> DomainReport:
        from smtpprobe.core.classify import Classifier
        from smtpprobe.probe.domain import run_domain
        from smtpprobe.probe.domain_policy import DEFAULT_DNSBL_ZONES

        zones = self.dnsbl_zones if self.dnsbl_zones is not None else DEFAULT_DNSBL_ZONES
        return await run_domain(
            target, classifier=Classifier(kb), trust=trust, nameservers=self.nameservers,
            timeout=self.timeout, deadline=_cap(self.deadline, budget), helo=self.helo,
            source_address=self.source_address, allow_private=self.allow_private,
            ips=self.ips, selectors=self.selectors, dnsbl_zones=zones,
            open_relay=self.open_relay, port=self.port, proxy=self.proxy,
            family=self.family)


def domain_plan(*, resolver: str | None, timeout: float, deadline: float,
                cafile: Path | None, helo: str | None, source_address: str | None,
                port: int, ip: list[str] | None, selector: list[str] | None,
                dnsbl: list[str] | None, open_relay: bool, allow_private: bool,
                proxy: str | None = None, proxy_password_env: str | None = None,
                proxy_password_file: str | None = None, ipv4: bool = False,
                ipv6: bool = False, interactive: bool = True) -> DomainPlan:
    from smtpprobe.cli.domain import _ips, _selectors, _zones
    from smtpprobe.core.address import parse_port

    check_numbers(timeout, deadline)
    return DomainPlan(
        nameservers=parse_nameservers(resolver), timeout=timeout, deadline=deadline,
        helo=parse_helo_option(helo), source_address=parse_source(source_address),
        allow_private=allow_private, port=parse_port(str(port)), ips=_ips(ip),
        selectors=_selectors(selector), dnsbl_zones=_zones(dnsbl), open_relay=open_relay,
        cafile=check_cafile(cafile),
        proxy=parse_proxy(proxy, proxy_password_env, proxy_password_file),
        family=parse_family(ipv4, ipv6))


# --- and back: a report as the command's output -------------------------------------------

# job -> (its JSON builder in report/json.py, its text module and view, its exit code in
# cli/exits.py). `check` has its own writer (cli/run_check.py: many addresses, streaming).
_OUTPUT = {
    "relay": ("relay_dict", "smtpprobe.report.text_relay", "relay_view", "for_relay"),
    "sweep": ("sweep_dict", "smtpprobe.report.text_sweep", "sweep_view", "for_sweep"),
    "domain": ("domain_dict", "smtpprobe.report.text_domain", "domain_view", "for_domain"),
}


def show_report(job: str, report: Any, *, lang: str, as_json: bool, verbose: bool) -> int:
    """Write a relay, sweep or domain report as JSON or text; the command's exit code."""
    import importlib
    import sys

    from smtpprobe.cli import exits

    to_json, module, view, exit_code = _OUTPUT[job]
    if as_json:
        from smtpprobe.report import json

        sys.stdout.write(json.dumps(getattr(json, to_json)(report, lang)) + "\n")
    else:
        from smtpprobe.cli.sweep import wide_console

        render = getattr(importlib.import_module(module), view)
        wide_console().print(render(report, lang, verbose=verbose))
    code: int = getattr(exits, exit_code)(report)
    return code
