"""Pure parsing and matching of the DNS records behind a mail domain's policies.

Values in, values out: the text of a TXT record or an MTA-STS policy, the fields of a TLSA
record and the DER certificates a server presented. The probe (probe/domain_policy.py) does the
lookups and turns what these functions say into statuses and findings; SPF is evaluated by
pyspf there, not here.

Each parser returns the record's facts and two lists: `errors` (the record is not valid and
receivers ignore it) and `warnings` (valid, but weaker than it looks or unusual).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Dkim",
    "Dmarc",
    "DnsblAnswer",
    "MtaStsPolicy",
    "MtaStsRecord",
    "TlsRpt",
    "Tlsa",
    "classify_dnsbl",
    "dnsbl_name",
    "mx_pattern_matches",
    "parse_dkim",
    "parse_dmarc",
    "parse_mta_sts_policy",
    "parse_mta_sts_record",
    "parse_tag_list",
    "parse_tls_rpt",
    "tlsa_match",
]

# -- tag lists (RFC 6376 3.2; DMARC, MTA-STS and TLS-RPT records use the same shape) ---------------

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def parse_tag_list(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """`"v=DMARC1; p=reject"` -> ([("v", "DMARC1"), ("p", "reject")], errors).

    Whitespace around names and values is dropped; an empty part (a trailing `;`) is allowed
    (RFC 6376 3.2: "tag-list = tag-spec *( ";" tag-spec ) [ ";" ]").
    """
    tags: list[tuple[str, str]] = []
    errors: list[str] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq:
            errors.append(f"{part!r} is not a tag=value pair")
            continue
        if not _TAG_NAME.match(name):
            errors.append(f"{name!r} is not a valid tag name")
            continue
        tags.append((name, " ".join(value.split())))
    return tags, errors


def _duplicates(tags: Sequence[tuple[str, str]]) -> list[str]:
    seen: set[str] = set()
    dupes: list[str] = []
    for name, _ in tags:
        key = name.lower()
        if key in seen and key not in dupes:
            dupes.append(key)
        seen.add(key)
    return dupes


# -- report URIs (DMARC rua/ruf, RFC 7489 6.2; TLS-RPT rua, RFC 8460 3) ----------------------------

# A mail address as report URIs carry it: local@domain, no spaces. Strict enough to catch
# "mailto:" without an address or a missing "@", which is what breaks reports in practice.
_MAILBOX = re.compile(r"[^@\s,;!]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z0-9-]+\Z")
_SIZE = re.compile(r"[0-9]+[kmgt]?\Z", re.IGNORECASE)


def _mailto(uri: str, *, size_limit: bool) -> str | None:
    """None when `uri` is a usable mailto: URI, else what is wrong with it."""
    if not uri.lower().startswith("mailto:"):
        return f"{uri!r} is not a mailto: URI"
    address = uri[len("mailto:"):]
    if size_limit and "!" in address:
        # RFC 7489 6.2: "mailto:reports@example.com!10m" limits the report size.
        address, _, size = address.partition("!")
        if not _SIZE.match(size):
            return f"{uri!r}: the size limit {size!r} is not a number with k, m, g or t"
    if not _MAILBOX.match(address):
        return f"{uri!r} does not hold a mail address"
    return None


# -- DMARC (RFC 7489) ------------------------------------------------------------------------------

_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True, slots=True)
class Dmarc:
    policy: str | None  # p=; None when missing or invalid
    subdomain_policy: str | None  # sp=, as written (None: inherits p=)
    pct: int  # 0-100, 100 when absent
    rua: tuple[str, ...]
    ruf: tuple[str, ...]
    adkim: str  # "r" or "s"
    aspf: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def effective_subdomain_policy(self) -> str | None:
        return self.subdomain_policy or self.policy


def parse_dmarc(text: str) -> Dmarc:
    """One `_dmarc.<domain>` TXT record (RFC 7489 6.3 and 6.4)."""
    tags, errors = parse_tag_list(text)
    warnings: list[str] = []
    if not tags or tags[0][0] != "v" or tags[0][1] != "DMARC1":
        # RFC 7489 6.4: v=DMARC1 comes first, exactly so; a receiver ignores anything else.
        errors.insert(0, "the record does not begin with v=DMARC1")
    for name in _duplicates(tags):
        errors.append(f"the tag {name}= appears more than once")
    values = {name.lower(): value for name, value in tags}
    policy = values.get("p")
    if policy is None:
        errors.append("the required tag p= is missing")
    elif policy.lower() not in _POLICIES:
        errors.append(f"p={policy} is not none, quarantine or reject")
        policy = None
    else:
        policy = policy.lower()
    sp = values.get("sp")
    if sp is not None:
        if sp.lower() not in _POLICIES:
            errors.append(f"sp={sp} is not none, quarantine or reject")
            sp = None
        else:
            sp = sp.lower()
    pct = 100
    if "pct" in values:
        raw = values["pct"]
        if raw.isdigit() and 0 <= int(raw) <= 100:
            pct = int(raw)
        else:
            errors.append(f"pct={raw} is not a whole number from 0 to 100")
    rua, ruf = _uris(values.get("rua"), "rua", errors), _uris(values.get("ruf"), "ruf", errors)
    alignment: dict[str, str] = {}
    for tag in ("adkim", "aspf"):
        raw = values.get(tag, "r")
        if raw.lower() not in ("r", "s"):
            errors.append(f"{tag}={raw} is not r (relaxed) or s (strict)")
            raw = "r"
        alignment[tag] = raw.lower()
    known = {"v", "p", "sp", "pct", "rua", "ruf", "adkim", "aspf", "fo", "rf", "ri", "np",
             "psd", "t"}
    for name, _ in tags:
        if name.lower() not in known:
            # RFC 7489 6.3: unknown tags are ignored, so a typo silently does nothing.
            warnings.append(f"the tag {name}= is not a DMARC tag and is ignored")
    return Dmarc(policy, sp, pct, rua, ruf, alignment["adkim"], alignment["aspf"],
                 tuple(errors), tuple(warnings))


def _uris(raw: str | None, tag: str, errors: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    uris = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not uris:
        errors.append(f"{tag}= is empty")
    for uri in uris:
        problem = _mailto(uri, size_limit=True)
        if problem is not None:
            errors.append(f"{tag}: {problem}")
    return uris


# -- DKIM key records (RFC 6376 3.6.1, RFC 8463) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dkim:
    key_type: str  # k=: "rsa" (default) or "ed25519"
    bits: int | None  # the key's size; None when it could not be read
    revoked: bool  # p= empty (RFC 6376 3.6.1)
    testing: bool  # t=y
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


# RFC 8301 3.2: signers use RSA keys of at least 1024 bits, and SHOULD use 2048.
DKIM_RSA_MINIMUM = 1024
DKIM_RSA_RECOMMENDED = 2048


def parse_dkim(text: str) -> Dkim:
    """One `<selector>._domainkey.<domain>` TXT record: its tags and the public key's size."""
    tags, errors = parse_tag_list(text)
    warnings: list[str] = []
    values = {name.lower(): value for name, value in tags}
    for name in _duplicates(tags):
        errors.append(f"the tag {name}= appears more than once")
    if "v" in values and (tags[0][0] != "v" or values["v"] != "DKIM1"):
        # RFC 6376 3.6.1: v= is optional, but when present it is first and exactly DKIM1.
        errors.append("v= is present but is not the first tag with the value DKIM1")
    key_type = values.get("k", "rsa").lower()
    testing = "y" in [flag.strip() for flag in values.get("t", "").split(":")]
    if "p" not in values:
        errors.append("the required tag p= (the public key) is missing")
        return Dkim(key_type, None, False, testing, tuple(errors), tuple(warnings))
    data = "".join(values["p"].split())
    if not data:
        return Dkim(key_type, None, True, testing, tuple(errors), tuple(warnings))
    try:
        der = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        errors.append("p= is not valid base64")
        return Dkim(key_type, None, False, testing, tuple(errors), tuple(warnings))
    bits: int | None = None
    if key_type == "rsa":
        bits = _rsa_bits(der)
        if bits is None:
            errors.append("p= does not hold an RSA public key")
        elif bits < DKIM_RSA_MINIMUM:
            errors.append(f"the RSA key has {bits} bits; verifiers refuse keys below "
                          f"{DKIM_RSA_MINIMUM} (RFC 8301 3.2)")
        elif bits < DKIM_RSA_RECOMMENDED:
            warnings.append(f"the RSA key has {bits} bits; {DKIM_RSA_RECOMMENDED} are "
                            f"recommended (RFC 8301 3.2)")
    elif key_type == "ed25519":
        # RFC 8463 4.2: the raw 32-byte key, not a SubjectPublicKeyInfo.
        if len(der) != 32:
            errors.append(f"an Ed25519 key has 32 bytes, this one {len(der)}")
        else:
            bits = 256
    else:
        errors.append(f"k={key_type} is not a key type verifiers know (rsa, ed25519)")
    if testing:
        warnings.append("t=y: the domain says it is testing DKIM; verifiers may ignore failures")
    return Dkim(key_type, bits, False, testing, tuple(errors), tuple(warnings))


def _rsa_bits(der: bytes) -> int | None:
    # cryptography is imported here, not at module load (start-up time, docs/performance.md).
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError):
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


# -- MTA-STS (RFC 8461) ----------------------------------------------------------------------------

_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")
# RFC 8461 3.2: max_age is at most 31557600 (about a year).
STS_MAX_AGE_LIMIT = 31_557_600
# Shorter than a day gives an attacker who strips the TXT record a window after each expiry.
STS_MAX_AGE_SHORT = 86_400


@dataclass(frozen=True, slots=True)
class MtaStsRecord:
    id: str | None
    errors: tuple[str, ...]


def parse_mta_sts_record(text: str) -> MtaStsRecord:
    """One `_mta-sts.<domain>` TXT record (RFC 8461 3.1): `v=STSv1; id=...`."""
    tags, errors = parse_tag_list(text)
    if not tags or tags[0] != ("v", "STSv1"):
        errors.insert(0, "the record does not begin with v=STSv1")
    values = dict(tags)
    policy_id = values.get("id")
    if policy_id is None:
        errors.append("the required id= is missing")
    elif not _STS_ID.match(policy_id):
        errors.append(f"id={policy_id} is not 1 to 32 letters and digits")
        policy_id = None
    return MtaStsRecord(policy_id, tuple(errors))


@dataclass(frozen=True, slots=True)
class MtaStsPolicy:
    mode: str | None  # enforce, testing, none
    max_age: int | None
    mx: tuple[str, ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def parse_mta_sts_policy(body: bytes) -> MtaStsPolicy:
    """The policy file from `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461 3.2).

    Lines are `key: value`, ended by CRLF or LF; unknown keys are ignored; `mx` may repeat.
    """
    errors: list[str] = []
    warnings: list[str] = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return MtaStsPolicy(None, None, (), ("the policy is not UTF-8 text",), ())
    fields: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            errors.append(f"line {number} is not 'key: value'")
            continue
        fields.append((key.strip(), value.strip()))
    single: dict[str, str] = {}
    mx: list[str] = []
    for key, value in fields:
        if key == "mx":
            mx.append(value.lower())
        elif key in single:
            errors.append(f"{key} appears more than once")
        else:
            single[key] = value
    if single.get("version") != "STSv1":
        errors.append("version: STSv1 is missing")
    mode = single.get("mode")
    if mode not in ("enforce", "testing", "none"):
        errors.append("mode is missing or not enforce, testing or none" if mode is None
                      else f"mode: {mode} is not enforce, testing or none")
        mode = None
    max_age: int | None = None
    raw_age = single.get("max_age")
    if raw_age is None:
        errors.append("max_age is missing")
    elif not raw_age.isdigit() or len(raw_age) > 10 or int(raw_age) > STS_MAX_AGE_LIMIT:
        errors.append(f"max_age: {raw_age} is not a number of seconds up to "
                      f"{STS_MAX_AGE_LIMIT}")
    else:
        max_age = int(raw_age)
        if max_age < STS_MAX_AGE_SHORT and mode != "none":
            warnings.append(f"max_age {max_age} s is under a day: senders forget the policy "
                            f"quickly")
    if not mx and mode in ("enforce", "testing"):
        errors.append("no mx: line, so no MX host can match the policy")
    for pattern in mx:
        if not _valid_mx_pattern(pattern):
            errors.append(f"mx: {pattern} is not a host name or *.name pattern")
    if mode == "testing":
        warnings.append("mode testing: senders report failures but still deliver without TLS")
    return MtaStsPolicy(mode, max_age, tuple(mx), tuple(errors), tuple(warnings))


_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def _valid_mx_pattern(pattern: str) -> bool:
    labels = pattern.removeprefix("*.").rstrip(".").split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def mx_pattern_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: `mail.example.com` matches itself; `*.example.com` matches exactly one
    further label on the left (`mx1.example.com`, not `a.b.example.com` nor `example.com`)."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


# -- TLS-RPT (RFC 8460) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsRpt:
    rua: tuple[str, ...]
    errors: tuple[str, ...]


def parse_tls_rpt(text: str) -> TlsRpt:
    """One `_smtp._tls.<domain>` TXT record (RFC 8460 3): `v=TLSRPTv1; rua=mailto:...`."""
    tags, errors = parse_tag_list(text)
    if not tags or tags[0] != ("v", "TLSRPTv1"):
        errors.insert(0, "the record does not begin with v=TLSRPTv1")
    values = dict(tags)
    raw = values.get("rua")
    if raw is None:
        errors.append("the required rua= is missing")
        return TlsRpt((), tuple(errors))
    uris = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not uris:
        errors.append("rua= is empty")
    for uri in uris:
        if uri.lower().startswith("https://"):
            if len(uri) <= len("https://") or " " in uri:
                errors.append(f"rua: {uri!r} is not a usable https: URI")
            continue
        problem = _mailto(uri, size_limit=False)
        if problem is not None:
            errors.append(f"rua: {problem} (RFC 8460 3 allows mailto: and https:)")
    return TlsRpt(uris, tuple(errors))


# -- DANE TLSA (RFC 6698 2.1, RFC 7671, RFC 7672 3.1) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


# RFC 7672 3.1.3: SMTP clients treat PKIX-TA(0) and PKIX-EE(1) records as unusable.
DANE_USABLE_USAGES = (2, 3)


def tlsa_usable(record: Tlsa) -> str | None:
    """None when a DANE SMTP client can use this record, else why not."""
    if record.usage not in DANE_USABLE_USAGES:
        return (f"usage {record.usage} (PKIX-{'TA' if record.usage == 0 else 'EE'}) is not "
                f"used for SMTP (RFC 7672 3.1.3)" if record.usage in (0, 1)
                else f"usage {record.usage} is not defined")
    if record.selector not in (0, 1):
        return f"selector {record.selector} is not defined (0 full certificate, 1 public key)"
    if record.mtype not in (0, 1, 2):
        return f"matching type {record.mtype} is not defined (0 exact, 1 SHA-256, 2 SHA-512)"
    expected = {1: 32, 2: 64}.get(record.mtype)
    if expected is not None and len(record.data) != expected:
        return f"a {'SHA-256' if record.mtype == 1 else 'SHA-512'} digest has {expected} " \
               f"bytes, this one {len(record.data)}"
    return None


def _selected(der: bytes, selector: int) -> bytes | None:
    if selector == 0:
        return der
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        cert = x509.load_der_x509_certificate(der)
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return None


def _digest(data: bytes, mtype: int) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def _matches(record: Tlsa, der: bytes) -> bool:
    selected = _selected(der, record.selector)
    return selected is not None and _digest(selected, record.mtype) == record.data


def _issued_by(child_der: bytes, parent_der: bytes) -> bool:
    from cryptography import x509

    try:
        child = x509.load_der_x509_certificate(child_der)
        parent = x509.load_der_x509_certificate(parent_der)
        child.verify_directly_issued_by(parent)
    except Exception:  # noqa: BLE001 - InvalidSignature, unsupported algorithms: no match
        return False
    return True


def tlsa_match(record: Tlsa, chain: Sequence[bytes]) -> bool:
    """Whether the chain a server presented (DER, leaf first) satisfies this TLSA record.

    DANE-EE(3): the leaf certificate (or its public key) matches; names and dates do not
    matter (RFC 7671 5.1). DANE-TA(2): a certificate after the leaf matches, and the leaf
    leads to it by signatures through the chain as sent (RFC 7671 5.2: the trust anchor must be
    in the chain the server sends). The name check DANE-TA also needs is the certificate
    check's (RFC 7672 3.2.3). Unusable records never match.
    """
    if tlsa_usable(record) is not None or not chain:
        return False
    if record.usage == 3:
        return _matches(record, chain[0])
    for index in range(1, len(chain)):
        if _matches(record, chain[index]):
            return all(_issued_by(chain[i], chain[i + 1]) for i in range(index))
    return False


# -- DNS blocklists (RFC 5782) ---------------------------------------------------------------------


def dnsbl_name(address: str, zone: str) -> str:
    """RFC 5782 2.1 and 2.4: `192.0.2.99`, `zen.example` -> `99.2.0.192.zen.example`; IPv6 as
    32 reversed nibbles."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        labels = list(reversed(str(ip).split(".")))
    else:
        labels = list(reversed(ip.exploded.replace(":", "")))
    return ".".join([*labels, zone.strip().rstrip(".")])


@dataclass(frozen=True, slots=True)
class DnsblAnswer:
    state: str  # "listed", "refused" (the list did not answer the question), "invalid"
    codes: tuple[str, ...]
    why: str


# Spamhaus's error answers (their "return codes" page): 127.255.255.252 typo in the zone name,
# .254 query through a public or open resolver, .255 too many queries. The list did not look
# the address up, so the answer says nothing about it.
DNSBL_REFUSED = {
    "127.255.255.252": "the blocklist says the zone name is misspelt",
    "127.255.255.254": "the blocklist refuses queries that come through a public resolver",
    "127.255.255.255": "the blocklist refuses queries from this resolver: too many",
}


def classify_dnsbl(addresses: Sequence[str]) -> DnsblAnswer:
    """What the A records a blocklist returned for one address mean (RFC 5782 2.3)."""
    refused = [code for code in addresses if code in DNSBL_REFUSED]
    if refused:
        return DnsblAnswer("refused", tuple(addresses), DNSBL_REFUSED[refused[0]])
    listed = []
    odd = []
    for code in addresses:
        try:
            ip = ipaddress.ip_address(code)
        except ValueError:
            odd.append(code)
            continue
        # RFC 5782 2.3: listings answer in 127.0.0.0/8, and 127.0.0.1 is never one (5).
        if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.IPv4Network(
                "127.0.0.0/8") and code != "127.0.0.1":
            listed.append(code)
        else:
            odd.append(code)
    if listed:
        return DnsblAnswer("listed", tuple(addresses), "")
    return DnsblAnswer("invalid", tuple(addresses),
                       f"the answer {', '.join(odd)} is not a blocklist code (127.0.0.2 and up):"
                       f" a resolver that rewrites NXDOMAIN, or a list that was shut down")
