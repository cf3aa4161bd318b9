#!/usr/bin/env bash
# Install the Debian packages the real-MTA test installation needs (tests/realmta/).
# Idempotent: when every package is already installed it only checks and exits, without
# touching apt. Needs root. Starts no service (see policy-rc.d below).
set -euo pipefail

# postfix: the MTA. swaks: reference client. dnsmasq-base: the DNS server binary without a
# service. sasl2-bin + libsasl2-modules: saslpasswd2, sasldb, PLAIN and LOGIN.
# postgrey: greylisting policy server. dnsutils: dig (readiness checks). openssl: test CA.
# iproute2: `ip` to put 127.0.0.53 on lo. util-linux: unshare (essential, listed for clarity).
# libnet-ssleay-perl: swaks' TLS support (only a Recommends of swaks, and recommends are off).
# python3 + python3-venv: scripts/test builds .venv with them on a fresh machine.
PACKAGES=(postfix swaks dnsmasq-base sasl2-bin libsasl2-modules postgrey dnsutils openssl
          iproute2 util-linux libnet-ssleay-perl python3 python3-venv)
# The further real servers of services/*.sh list their packages beside them, one per line.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for list in "$HERE"/services/*.packages; do
    [[ -e "$list" ]] || continue
    while read -r pkg _; do
        [[ -n "$pkg" && "$pkg" != \#* ]] && PACKAGES+=("$pkg")
    done <"$list"
done

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"

# Postfix asks what kind of mail system this is; "No configuration" writes no main.cf and
# leaves the system's Postfix unconfigured (realmta.sh uses a private config directory).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string mx1.accept.test" | debconf-set-selections

# Package scripts would start the system's postgrey on 127.0.0.1:10023. A policy-rc.d that
# answers 101 ("action forbidden") stops that; remove it again unless it was there before.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() {
    if [[ $own_policy -eq 1 ]]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
