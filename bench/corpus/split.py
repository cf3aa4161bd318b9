"""Split bench/corpus/replies.jsonl once into dev and holdout, by vendor (SOURCES.md, "Split").

A provider's or an MTA's phrasings must not be in both halves, so the unit is the vendor
family, not the entry: the vendor field is normalised (`family`) so that e.g. Gmail's pages and
Gmail's bounces, or Postfix's source, postscreen and Postfix bounces, fall together. Families
are ranked by sha256(SALT + family); within each stratum (MTA software, providers and other
sources) families are taken into the holdout in that order, skipping one that would overshoot,
until the holdout holds about HOLDOUT_SHARE of the stratum's entries. The result depends only on
the vendor names, the salt and the counts, never on the replies or their labels.

usage: python bench/corpus/split.py [--write] [--salt SALT]
  without --write it prints the families and the split it would write (no reply texts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "replies.jsonl"
SALT = "smtpprobe-corpus-split-1"
HOLDOUT_SHARE = 0.35
MIN_HOLDOUT_FAMILIES = 3  # per stratum: several MTAs and several providers in the holdout

# Vendor names -> family: same software, same company or the same mail platform. Checked in
# order, on the lower-cased vendor name; anything else is its own family (its name, slugged).
FAMILIES: tuple[tuple[str, str], ...] = (
    (r"postgrey", "postgrey"),            # a policy server of its own, not Postfix's texts
    (r"postfix", "postfix"),              # smtpd, postscreen, bounces, forum quotes
    (r"exim", "exim"),                    # source, bounces, a cPanel/Exim hoster
    (r"qmail|chkuser|vpopmail", "qmail"),  # notqmail, the sagredo patch set, chkuser
    (r"sendmail", "sendmail"),
    (r"dovecot", "dovecot"),              # lib-smtp, LMTP and submission share their texts
    (r"haraka", "haraka"),                # core and plugins
    (r"go-smtp|maddy", "go-smtp"),        # maddy is built on go-smtp
    (r"google|gmail", "google"),
    (r"microsoft|outlook\.com|hotmail|exchange", "microsoft"),
    (r"yahoo|\baol\b|verizon|compuserve", "yahoo"),  # AOL's platform runs these mailboxes
    (r"united internet|gmx|web\.de|ionos|1&1", "unitedinternet"),
    (r"amazon", "amazon"),                # SES and WorkMail (WorkMail receives through SES)
    (r"apple|icloud", "apple"),
)

# Families that are MTA software (their own source, or a product seen in bounces); all other
# families (mail providers, gateways, hosters, collections of unidentified servers) are the
# provider stratum.
MTA_FAMILIES = {
    "postfix", "postgrey", "exim", "qmail", "sendmail", "dovecot", "haraka", "go-smtp", "mox",
    "chasquid", "stalwart-mail-server", "apache-james", "opensmtpd", "courier-mta", "postal",
    "hmailserver", "zimbra-lmtp-milter", "oracle-communications-messaging-server",
}


def family(vendor: str) -> str:
    low = vendor.lower()
    for pattern, name in FAMILIES:
        if re.search(pattern, low):
            return name
    return re.sub(r"[^a-z0-9]+", "-", low).strip("-")


def _rank(name: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()


def assign(counts: Counter[str], salt: str) -> dict[str, str]:
    """family -> "dev" | "holdout"."""
    split: dict[str, str] = {}
    for stratum in (True, False):
        names = sorted((n for n in counts if (n in MTA_FAMILIES) is stratum),
                       key=lambda n: _rank(n, salt))
        target = HOLDOUT_SHARE * sum(counts[n] for n in names)
        held = 0
        for name in names:
            if held + counts[name] <= target:
                split[name] = "holdout"
                held += counts[name]
            else:
                split[name] = "dev"
        chosen = [n for n in names if split[n] == "holdout"]
        if len(chosen) < MIN_HOLDOUT_FAMILIES:
            raise SystemExit(f"split: only {chosen} in the holdout of a stratum; use another salt")
    return split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="write the split field")
    parser.add_argument("--salt", default=SALT)
    opts = parser.parse_args(argv)
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    counts = Counter(family(row["vendor"]) for row in rows)
    split = assign(counts, opts.salt)
    for name in sorted(counts, key=lambda n: (split[n], n not in MTA_FAMILIES, -counts[n])):
        kind = "mta" if name in MTA_FAMILIES else "provider"
        print(f"{split[name]:<8} {kind:<8} {counts[name]:>4}  {name}")
    held = sum(counts[n] for n in counts if split[n] == "holdout")
    print(f"holdout: {held}/{len(rows)} = {held / len(rows):.1%} in "
          f"{sum(1 for n in split if split[n] == 'holdout')} of {len(counts)} families")
    if opts.write:
        out = []
        for row in rows:
            row.pop("split", None)
            row["split"] = split[family(row["vendor"])]
            out.append(json.dumps(row, ensure_ascii=False))
        CORPUS.write_text("\n".join(out) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
