"""Plain values that flow through smtpprobe: frozen dataclasses and enums only.

Nothing here does I/O or imports asyncio, aiosmtplib or dnspython, so every other pure module
(parsing, classification, rendering) can be tested with values built by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Stage(StrEnum):
    """Where in the conversation a reply or failure happened (RFC 5321 4.3.2 command order)."""

    DNS = "dns"
    CONNECT = "connect"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    QUIT = "quit"


class Category(StrEnum):
    """What a reply means for the user; documented in docs/knowledge.md."""

    SUCCESS = "success"
    INTERMEDIATE = "intermediate"
    CONNECTION_FAILED = "connection_failed"
    SERVER_UNAVAILABLE = "server_unavailable"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    GREYLISTED = "greylisted"
    BLOCKLISTED = "blocklisted"
    REPUTATION_BLOCK = "reputation_block"
    DYNAMIC_IP_REJECTED = "dynamic_ip_rejected"
    CLIENT_IDENTITY_REJECTED = "client_identity_rejected"
    SENDER_AUTH_FAILED = "sender_auth_failed"
    SENDER_REJECTED = "sender_rejected"
    SENDER_MISMATCH = "sender_mismatch"
    RELAY_DENIED = "relay_denied"
    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    AUTH_METHOD_REJECTED = "auth_method_rejected"
    TLS_REQUIRED = "tls_required"
    TLS_UNAVAILABLE = "tls_unavailable"
    USER_UNKNOWN = "user_unknown"
    DOMAIN_NOT_FOUND = "domain_not_found"
    MAILBOX_FULL = "mailbox_full"
    MAILBOX_INACTIVE = "mailbox_inactive"
    MESSAGE_TOO_LARGE = "message_too_large"
    CONTENT_REJECTED = "content_rejected"
    POLICY_REJECTED = "policy_rejected"
    SYNTAX_ERROR = "syntax_error"
    BAD_SEQUENCE = "bad_sequence"
    NOT_IMPLEMENTED = "not_implemented"
    ROUTING_ERROR = "routing_error"
    UNCLASSIFIED = "unclassified"
    # More specific categories of our own (docs/knowledge.md, "Extra categories").
    PROTOCOL_ERROR = "protocol_error"
    TLS_FAILED = "tls_failed"
    CERTIFICATE_PROBLEM = "certificate_problem"
    DNS_FAILED = "dns_failed"
    CATCH_ALL = "catch_all"
    OPEN_RELAY = "open_relay"
    CREDENTIALS_WITHHELD = "credentials_withheld"


# Categories that describe the prober (its IP, its network, its name) rather than the
# address being checked: after one of these the address's own status is unknown.
PROBER_CATEGORIES: frozenset[Category] = frozenset(
    {
        Category.BLOCKLISTED,
        Category.REPUTATION_BLOCK,
        Category.DYNAMIC_IP_REJECTED,
        Category.CLIENT_IDENTITY_REJECTED,
        Category.RATE_LIMITED,
        Category.RELAY_DENIED,
        Category.AUTH_REQUIRED,
        Category.TLS_REQUIRED,
        Category.SENDER_REJECTED,
        Category.SENDER_AUTH_FAILED,
        Category.POLICY_REJECTED,
    }
)


class Severity(StrEnum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class FailureKind(StrEnum):
    """Evidence that is not a server reply: ways a step can end without one, and observations
    the probe makes itself (certificate problems, a catch-all domain, an open relay)."""

    REFUSED = "refused"  # TCP RST on connect
    TIMEOUT = "timeout"  # no answer within the step's timeout
    UNREACHABLE = "unreachable"  # no route, network down, address not available
    CLOSED = "closed"  # the server closed the connection
    TLS_HANDSHAKE = "tls_handshake"  # TLS negotiation failed
    PROTOCOL = "protocol"  # the server's bytes were not a valid SMTP reply
    REPLY_TOO_LONG = "reply_too_long"  # the server sent more than a reply may hold
    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_SERVFAIL = "dns_servfail"
    DNS_TIMEOUT = "dns_timeout"
    DNS_NO_ADDRESS = "dns_no_address"  # a mail host with neither A nor AAAA
    # ICMP port unreachable from the resolver itself: nothing listens at that address and port
    DNS_RESOLVER_REFUSED = "dns_resolver_refused"
    # An address no mail client connects to: unspecified (0.0.0.0, ::), broadcast, multicast
    ADDRESS_UNUSABLE = "address_unusable"
    # A public name with a loopback, private or link-local address: skipped unless allowed
    ADDRESS_PRIVATE = "address_private"
    # More MX hosts or addresses than a mail server tries (MX_ADDRESS_LIMIT, MX_SESSION_LIMIT)
    MX_LIMIT = "mx_limit"
    NULL_MX = "null_mx"  # RFC 7505
    MX_IS_IP = "mx_is_ip"  # RFC 5321 5.1: an MX must name a host, not an address
    MX_IS_CNAME = "mx_is_cname"  # RFC 5321 5.1 / RFC 2181 10.3
    DEADLINE = "deadline"  # the command's overall deadline ran out
    WITHHELD = "withheld"  # we chose not to send (credentials over plaintext)
    NOT_OFFERED = "not_offered"  # the server does not offer what the step needs
    LOCAL = "local"  # a fault on this machine (bad source address ...)
    # Observations (knowledge/probe/observations.toml): the step worked, but something is wrong.
    CERT_UNTRUSTED = "cert_untrusted"  # the chain does not verify against the trust store
    CERT_NAME_MISMATCH = "cert_name_mismatch"  # the certificate does not name the host
    CERT_EXPIRED = "cert_expired"
    CERT_EXPIRING = "cert_expiring"  # fewer than 14 days left
    TLS_OUTDATED = "tls_outdated"  # TLS 1.0/1.1 or SSL
    CERT_UNREADABLE = "cert_unreadable"  # a certificate that cannot be parsed (X.509 v2 ...)
    CERT_NOT_YET_VALID = "cert_not_yet_valid"  # its validity starts in the future
    CERT_WRONG_PURPOSE = "cert_wrong_purpose"  # extended key usage without serverAuth
    # The name mismatch of a submission server (sweep, relay): the name is the one users type
    # into their mail programs, not an MX record.
    CERT_NAME_MISMATCH_SUBMISSION = "cert_name_mismatch_submission"
    CATCH_ALL = "catch_all"  # a random local part was accepted too
    NOT_CATCH_ALL = "not_catch_all"  # a random local part was refused: the 250 counts
    MX_DOWN = "mx_down"  # a mail host did not answer while another of the domain did
    SLOW_REPLY = "slow_reply"  # a greeting or reply took seconds (tarpit, DNS trouble, load)
    OPEN_RELAY = "open_relay"  # mail for a foreign domain accepted without authentication
    RELAY_REFUSED = "relay_refused"  # the open-relay check passed
    # domain: mx and tls checks (knowledge/domain/mx-tls.toml, `smtpprobe domain`)
    DOMAIN_NO_MX = "domain_no_mx"  # no MX: mail goes to the domain's own A/AAAA (RFC 5321 5.1)
    DOMAIN_NO_MAIL_HOST = "domain_no_mail_host"  # neither MX nor A/AAAA
    DOMAIN_NULL_MX = "domain_null_mx"  # RFC 7505: the domain says it takes no mail
    DOMAIN_NULL_MX_MIXED = "domain_null_mx_mixed"  # null MX beside other MX (RFC 7505 3)
    DOMAIN_MX_DUPLICATE = "domain_mx_duplicate"  # the same host in several MX records
    DOMAIN_MX_SAME_PREFERENCE = "domain_mx_same_preference"  # MX hosts share a preference
    DOMAIN_NO_IPV6 = "domain_no_ipv6"  # no MX host has an AAAA record
    DOMAIN_IPV6_UNREACHABLE = "domain_ipv6_unreachable"  # AAAA, but port 25 does not answer
    DOMAIN_PTR_MISSING = "domain_ptr_missing"  # an MX address without reverse DNS
    DOMAIN_FCRDNS_MISMATCH = "domain_fcrdns_mismatch"  # the PTR name does not lead back
    DOMAIN_BANNER_MISMATCH = "domain_banner_mismatch"  # greeting name is not the PTR name
    DOMAIN_STARTTLS_MISSING = "domain_starttls_missing"  # the MX does not offer STARTTLS
    DOMAIN_TLS_OLD_ACCEPTED = "domain_tls_old_accepted"  # TLS 1.0/1.1 still accepted
    DOMAIN_TLS_OLD_ONLY = "domain_tls_old_only"  # nothing newer than TLS 1.1
    DOMAIN_POSTMASTER_REFUSED = "domain_postmaster_refused"  # RFC 5321 4.5.1
    DOMAIN_RELAY_TRICK = "domain_relay_trick"  # a disguised outside recipient was accepted
    # domain: policy checks (knowledge/domain/policy.toml, probe/domain_policy.py)
    DOMAIN_SPF_MISSING = "domain_spf_missing"  # no v=spf1 TXT record
    DOMAIN_SPF_MULTIPLE = "domain_spf_multiple"  # more than one (RFC 7208 4.5: permerror)
    DOMAIN_SPF_INVALID = "domain_spf_invalid"  # syntax or evaluation permerror
    DOMAIN_SPF_TOO_MANY_LOOKUPS = "domain_spf_too_many_lookups"  # > 10 (RFC 7208 4.6.4)
    DOMAIN_SPF_VOID_LOOKUPS = "domain_spf_void_lookups"  # > 2 empty answers (RFC 7208 4.6.4)
    DOMAIN_SPF_PERMISSIVE = "domain_spf_permissive"  # +all or ?all: anyone may send
    DOMAIN_SPF_IP_FAILS = "domain_spf_ip_fails"  # an --ip address does not pass
    DOMAIN_SPF_MX_NOT_LISTED = "domain_spf_mx_not_listed"  # the MX addresses do not pass
    DOMAIN_SPF_TEMPERROR = "domain_spf_temperror"  # a lookup failed during evaluation
    DOMAIN_DMARC_MISSING = "domain_dmarc_missing"
    DOMAIN_DMARC_INVALID = "domain_dmarc_invalid"  # receivers ignore the record
    DOMAIN_DMARC_MONITORING = "domain_dmarc_monitoring"  # p=none: nothing is enforced
    DOMAIN_DMARC_PARTIAL = "domain_dmarc_partial"  # pct < 100 or a weaker sp=
    DOMAIN_DMARC_NO_REPORTS = "domain_dmarc_no_reports"  # no rua=: nobody sees the results
    DOMAIN_DKIM_NO_SELECTOR = "domain_dkim_no_selector"  # cannot be checked without one
    DOMAIN_DKIM_MISSING = "domain_dkim_missing"  # no key record at the selector
    DOMAIN_DKIM_INVALID = "domain_dkim_invalid"  # the key record does not parse
    DOMAIN_DKIM_WEAK_KEY = "domain_dkim_weak_key"  # RSA under 2048 bits (RFC 8301 3.2)
    DOMAIN_DKIM_REVOKED = "domain_dkim_revoked"  # p= empty
    DOMAIN_DNSBL_LISTED = "domain_dnsbl_listed"  # an address is on a blocklist
    DOMAIN_DNSBL_UNANSWERED = "domain_dnsbl_unanswered"  # "query refused" codes, no answer
    DOMAIN_MTA_STS_MISSING = "domain_mta_sts_missing"
    DOMAIN_MTA_STS_INVALID = "domain_mta_sts_invalid"  # TXT record or policy file
    DOMAIN_MTA_STS_FETCH = "domain_mta_sts_fetch"  # the policy could not be fetched over HTTPS
    DOMAIN_MTA_STS_MX_UNCOVERED = "domain_mta_sts_mx_uncovered"  # an MX no mx: pattern matches
    DOMAIN_MTA_STS_TESTING = "domain_mta_sts_testing"  # mode testing or none
    DOMAIN_TLS_RPT_MISSING = "domain_tls_rpt_missing"
    DOMAIN_TLS_RPT_INVALID = "domain_tls_rpt_invalid"
    DOMAIN_DANE_MISSING = "domain_dane_missing"  # no TLSA records
    DOMAIN_DANE_MISMATCH = "domain_dane_mismatch"  # validated TLSA, the certificate differs
    DOMAIN_DANE_UNVALIDATED = "domain_dane_unvalidated"  # TLSA present, no AD bit
    DOMAIN_DANE_UNUSABLE = "domain_dane_unusable"  # only records SMTP clients cannot use
    DOMAIN_DANE_NO_CERTIFICATE = "domain_dane_no_certificate"  # the MX presented no chain
    # Through a SOCKS5 proxy (--proxy, RFC 1928): the proxy's failures, not the target's.
    PROXY_UNREACHABLE = "proxy_unreachable"  # no TCP connection to the proxy itself
    PROXY_AUTH = "proxy_auth"  # the proxy wants a login, or refused ours (RFC 1929)
    PROXY_REFUSED = "proxy_refused"  # the proxy's rules forbid this connection (reply 1, 2, 7, 8)
    PROXY_ONWARD = "proxy_onward"  # the proxy could not reach the target (reply 3, 4, 5, 6)
    PROXY_PROTOCOL = "proxy_protocol"  # what answered is not a SOCKS5 proxy
    # Every mail host timed out on the port and so did an unrelated one (--canary) or the
    # other MX hosts: outgoing connections to that port are dropped on our side.
    PORT_BLOCKED = "port_blocked"
    PORT_OPEN = "port_open"  # ... but the canary answered: the mail hosts are at fault
    FAMILY_EXCLUDED = "family_excluded"  # -4/-6 left a host without an address to try
    # The provider's error for an OAuth token (RFC 7628 3.2.2: base64 JSON in a 334 reply).
    OAUTH_ERROR = "oauth_error"
    # The self-check of the probing host (core/selfcheck.py, `smtpprobe whoami`).
    SELF_NO_PTR = "self_no_ptr"  # our source address has no reverse DNS
    SELF_PTR_MISMATCH = "self_ptr_mismatch"  # ... whose name does not point back
    SELF_HELO_MISMATCH = "self_helo_mismatch"  # the EHLO name does not resolve to it
    SELF_LISTED = "self_listed"  # our address is on a blocklist a refusal named
    SELF_OK = "self_ok"  # none of that
    # An address that needs SMTPUTF8 (RFC 6531) and a server that does not offer it.
    SMTPUTF8_NOT_OFFERED = "smtputf8_not_offered"


@dataclass(frozen=True, slots=True)
class LocalText:
    """A text in both languages the tool speaks."""

    en: str
    de: str

    def get(self, lang: str) -> str:
        return self.de if lang == "de" else self.en


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply. `lines` hold the text of each line without the code and separator."""

    code: int | None
    enhanced: str | None
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def klass(self) -> int | None:
        """The first digit of the code (RFC 5321 4.2.1), None when there is no valid code."""
        return self.code // 100 if self.code is not None else None

    @property
    def first_line(self) -> str:
        return self.lines[0] if self.lines else ""

    def render(self) -> str:
        """The reply as it travels on the wire (without the final CRLF)."""
        if self.code is None:
            return self.text
        lines = self.lines or ("",)
        out = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out.append(f"{self.code}{sep}{line}".rstrip())
        return "\n".join(out)


@dataclass(frozen=True, slots=True)
class Failure:
    """A step that got no usable reply. `detail` is one line and never holds a secret."""

    kind: FailureKind
    detail: str


@dataclass(frozen=True, slots=True)
class Finding:
    """What a reply or failure means: the classifier's output."""

    category: Category
    retryable: bool
    severity: Severity
    stage: Stage | None
    code: int | None
    enhanced_code: str | None
    rule: str
    cause: LocalText
    remedy: LocalText
    references: tuple[str, ...] = ()
    evidence: str = ""  # the server's words (or our failure detail) the finding rests on
    title: LocalText | None = None
    correction: LocalText | None = None  # where a popular help text says something wrong

    @property
    def about_prober(self) -> bool:
        return self.category in PROBER_CATEGORIES


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an EHLO reply advertised (RFC 5321 4.1.1.1): keyword -> parameters."""

    greeting: str = ""
    extensions: tuple[tuple[str, str], ...] = ()
    esmtp: bool = True  # False when only HELO worked

    def has(self, keyword: str) -> bool:
        keyword = keyword.upper()
        return any(name == keyword for name, _ in self.extensions)

    def params(self, keyword: str) -> str | None:
        keyword = keyword.upper()
        for name, value in self.extensions:
            if name == keyword:
                return value
        return None

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        # RFC 4954 3; some old servers still announce "AUTH=LOGIN PLAIN".
        mechs: list[str] = []
        for name, value in self.extensions:
            if name in ("AUTH", "AUTH=LOGIN"):
                for mech in value.upper().replace("=", " ").split():
                    if mech not in mechs:
                        mechs.append(mech)
        return tuple(mechs)

    @property
    def size_limit(self) -> int | None:
        value = self.params("SIZE")
        if value and value.strip().isdigit():
            return int(value.strip())
        return None

    @property
    def starttls(self) -> bool:
        return self.has("STARTTLS")

    @property
    def pipelining(self) -> bool:
        return self.has("PIPELINING")


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What the TLS handshake showed about the server and its certificate."""

    version: str
    cipher: str
    bits: int | None = None
    subject: str | None = None
    names: tuple[str, ...] = ()
    issuer: str | None = None
    not_after: str | None = None  # ISO 8601, UTC
    days_left: int | None = None
    verified: bool = False  # the chain verifies against the trust store in use
    verify_error: str | None = None
    expected_name: str | None = None  # the host name, or the IP address when given one
    name_matches: bool | None = None  # None when no name was expected or the leaf is unreadable
    # Added for RFC 6125 IP matching and readable verification problems:
    ip_names: tuple[str, ...] = ()  # the iPAddress entries, the only ones that cover an address
    not_before: str | None = None  # ISO 8601, UTC
    # Why the chain does not verify, as a stable key: self_signed, unknown_issuer,
    # missing_intermediate, expired, not_yet_valid, wrong_purpose, unreadable, no_certificate,
    # no_trust_store, untrusted (another rule of the verifier); None when it verifies.
    verify_problem: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One command (or the connection itself) and what came back."""

    stage: Stage
    command: str | None  # as sent, with secrets replaced by "****"
    reply: Reply | None = None
    failure: Failure | None = None
    elapsed_ms: float = 0.0
    finding: Finding | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and self.reply is not None and self.reply.klass in (2, 3)

    # Named predicates instead of `step.reply is not None and step.reply.code == N` everywhere.

    def replied(self, *codes: int) -> bool:
        """The server answered with one of `codes`."""
        return self.reply is not None and self.reply.code in codes

    @property
    def refused(self) -> bool:
        """The server answered with a 4yz or 5yz reply."""
        return self.reply is not None and self.reply.klass in (4, 5)

    @property
    def hanging_up(self) -> bool:
        """No reply, or 421: the server is closing the channel (RFC 5321 3.8)."""
        return self.reply is None or self.reply.code == 421

    @property
    def continues(self) -> bool:
        """334: the server waits for the next SASL message (RFC 4954 4)."""
        return self.replied(334)


@dataclass(frozen=True, slots=True)
class MxHost:
    """A host that receives mail for a domain, with its resolved addresses."""

    name: str
    preference: int
    addresses: tuple[str, ...] = ()
    implicit: bool = False  # RFC 5321 5.1: no MX records, the domain's own A/AAAA
    failure: Failure | None = None  # why it has no usable address


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    UNREACHABLE = "unreachable"


class AddressStatus(StrEnum):
    """What the check learned about the address itself, as opposed to the conversation."""

    EXISTS = "exists"
    DOES_NOT_EXIST = "does_not_exist"
    CATCH_ALL = "catch_all"  # the domain accepts any local part: existence unknown
    INACTIVE = "inactive"  # the mailbox exists but is disabled or has moved
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MxResult:
    """The outcome of an MX lookup: hosts in the order to try, or why there are none."""

    domain: str  # the ASCII (IDNA) form that was looked up
    hosts: tuple[MxHost, ...] = ()
    failure: Failure | None = None
    elapsed_ms: float = 0.0
    warnings: tuple[Failure, ...] = ()  # problems that did not stop the lookup


@dataclass(frozen=True, slots=True)
class HostReport:
    """One SMTP conversation with one address of one host."""

    host: str
    address: str
    port: int
    steps: tuple[Step, ...] = ()
    tls: TlsInfo | None = None
    capabilities: Capabilities | None = None
    capabilities_after_tls: Capabilities | None = None


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Everything `smtpprobe check` learned about one address."""

    address: str
    domain: str
    verdict: Verdict
    finding: Finding
    address_status: AddressStatus
    mx: MxResult
    hosts: tuple[HostReport, ...] = ()
    findings: tuple[Finding, ...] = ()
    catch_all: bool | None = None
    elapsed_ms: float = 0.0
    mail_from: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    # What DNS said about the finding's cause (probe/lookups.py): a blocklist, SPF/DMARC of
    # the sender domain, the probe's reverse DNS; empty when the finding names nothing to check.
    lookups: tuple[Lookup, ...] = ()


@dataclass(frozen=True, slots=True)
class InvalidInput:
    """A line of an address list (or an argument) that is not an address: reported where it
    stands, as `invalid`, while the other addresses are checked."""

    line: int | None  # 1-based line of --file; None for an argument
    text: str
    error: str


# --- sweep and relay ---


class PortMode(StrEnum):
    """How a port is spoken to: plain text upgraded with STARTTLS (RFC 3207), TLS from the
    first byte ("implicit TLS", RFC 8314 3.3), or plain text only."""

    STARTTLS = "starttls"
    TLS = "tls"
    PLAIN = "plain"


class PortState(StrEnum):
    """What trying a port showed, before any login."""

    OPEN = "open"  # a 220 greeting
    REFUSED = "refused"  # TCP reset: nothing listens, or a firewall rejects
    FILTERED = "filtered"  # the TCP connection timed out: packets are silently dropped
    UNREACHABLE = "unreachable"  # no route to the address
    SILENT = "silent"  # TCP connected, but no greeting in time
    REJECTED = "rejected"  # a greeting other than 220 (554, 421 ...)
    FAILED = "failed"  # closed, TLS broke, not SMTP, the deadline ran out ...


class AuthResult(StrEnum):
    """How a login attempt on one port ended."""

    OK = "ok"
    FAILED = "failed"  # 535: user name or password wrong
    APP_PASSWORD = "app_password"  # 534: an app password (or a stronger method) is needed
    METHOD_REJECTED = "method_rejected"  # 504 and friends: the method was not accepted
    TLS_REQUIRED = "tls_required"  # 530 / 538: encryption first
    NOT_OFFERED = "not_offered"  # no AUTH, or none smtpprobe can use
    WITHHELD = "withheld"  # the connection was not encrypted: the password was not sent
    UNTRUSTED = "untrusted"  # encrypted, but the certificate does not verify: not sent either
    TEMPORARY = "temporary"  # 4xx
    ERROR = "error"  # no reply: timeout, closed connection
    NOT_TRIED = "not_tried"  # no credentials given, or the port could not be used


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    result: AuthResult = AuthResult.NOT_TRIED
    mechanism: str | None = None  # the mechanism of the last attempt
    tried: tuple[str, ...] = ()
    finding: Finding | None = None


@dataclass(frozen=True, slots=True)
class PortReport:
    """One port of a sweep: reachability, TLS, what EHLO offered, and the login."""

    port: int
    mode: PortMode
    host: str
    address: str
    state: PortState
    reachable: bool = False  # the TCP connection was made
    steps: tuple[Step, ...] = ()
    banner: str | None = None
    failure: Finding | None = None  # why the port could not be used
    tls: TlsInfo | None = None
    capabilities_before_tls: Capabilities | None = None
    capabilities_after_tls: Capabilities | None = None
    auth: AuthOutcome = AuthOutcome()
    findings: tuple[Finding, ...] = ()
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Reason:
    """One line of a recommendation's explanation: a text key and its values (the words
    themselves live with the renderers, in both languages)."""

    key: str
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What to type into a mail program, or why nothing works."""

    usable: bool
    tested: bool  # a login on the recommended port succeeded
    host: str
    port: int | None = None
    mode: PortMode | None = None
    mechanism: str | None = None
    reasons: tuple[Reason, ...] = ()
    finding: Finding | None = None  # when nothing works: the most likely cause and remedy


@dataclass(frozen=True, slots=True)
class SweepReport:
    host: str
    addresses: tuple[str, ...]
    ports: tuple[PortReport, ...]
    recommendation: Recommendation
    user: str | None = None
    dns_failure: Finding | None = None
    elapsed_ms: float = 0.0
    address: str | None = None  # the address the ports were tried on (None: no address)
    # Addresses left out (unusable, private, over the limit) and addresses given up because
    # no port could be connected to there, in the order they were met.
    address_findings: tuple[Finding, ...] = ()


class CheckStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


class RelayVerdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    TEMPORARY = "temporary"  # nothing failed for good, but something answered 4xx or timed out


@dataclass(frozen=True, slots=True)
class RelayCheck:
    """One check of `smtpprobe relay`: connect, tls, auth, mail, rcpt, send or open_relay."""

    name: str
    status: CheckStatus
    finding: Finding | None = None
    subject: str | None = None  # the recipient of an rcpt check
    temporary: bool = False  # failed, but a later run may pass (4xx, timeout)
    steps: tuple[Step, ...] = ()
    elapsed_ms: float = 0.0
    note: Reason | None = None  # why it was skipped, or what it established


@dataclass(frozen=True, slots=True)
class RelayReport:
    host: str
    address: str
    port: int
    mode: PortMode
    verdict: RelayVerdict
    checks: tuple[RelayCheck, ...]
    tls: TlsInfo | None = None
    message_id: str | None = None
    queue_id: str | None = None
    user: str | None = None
    elapsed_ms: float = 0.0
    addresses: tuple[str, ...] = ()  # every address the host name gave, in the order tried
    # Addresses left out (unusable, private, over the limit), in the order they were met;
    # the connect attempts on addresses given up are the first steps of the connect check.
    address_findings: tuple[Finding, ...] = ()
    notes: tuple[Finding, ...] = ()  # what passed but is worth a word (a slow greeting)


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """A login. The password never shows in a repr, a log line or a traceback's locals."""

    user: str
    password: str
    source: str  # where the password came from, for messages ("$VAR", "file F", "prompt")

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=****, source={self.source!r})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class Proxy:
    """A SOCKS5 proxy to connect through (--proxy). `remote_dns` (socks5h): the proxy resolves
    host names. The password never shows in a repr, a message or `url`."""

    host: str
    port: int
    remote_dns: bool = False
    user: str | None = None
    password: str | None = None
    source: str = ""  # where the password came from ("$VAR", "file F")

    @property
    def url(self) -> str:
        """The proxy as the user wrote it, without any password."""
        scheme = "socks5h" if self.remote_dns else "socks5"
        host = f"[{self.host}]" if ":" in self.host else self.host
        login = f"{self.user}@" if self.user else ""
        return f"{scheme}://{login}{host}:{self.port}"

    def __repr__(self) -> str:
        return f"Proxy({self.url!r})"

    __str__ = __repr__


# -- smtpprobe domain (docs/json.md, "domain") ---------------------------------------------------


class HealthStatus(StrEnum):
    """The status of one domain check (issue 12): `unknown` = it could not be checked."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    INFO = "info"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DomainCheck:
    """One finding of `smtpprobe domain`: a check id (`mx`, `spf`, `dane`, ...), what it was
    about (the domain, an MX host or one address), its status, a one-line summary in both
    languages, the knowledge base's cause and remedy when it is not ok, and facts for JSON."""

    id: str
    subject: str
    status: HealthStatus
    summary: LocalText
    finding: Finding | None = None
    details: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Lookup:
    """A DNS lookup that carries out a finding's remedy (`check`, `explain --lookup`): `kind`
    is dnsbl, spf, dmarc or ptr; `subject` the address or domain looked up; `summary` what was
    found, one line in both languages; `details` the facts for JSON."""

    kind: str
    subject: str
    status: HealthStatus
    summary: LocalText
    details: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DomainReport:
    domain: str  # as given
    ascii_domain: str  # the IDNA form that was checked
    checks: tuple[DomainCheck, ...]
    elapsed_ms: float = 0.0

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in HealthStatus}
        for check in self.checks:
            counts[check.status.value] += 1
        return counts
