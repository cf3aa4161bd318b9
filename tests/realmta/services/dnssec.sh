#!/usr/bin/env bash
# DNSSEC for the DANE tests: bind9 serves signed TLSA zones on 127.0.0.55:53, and a validating
# unbound on 127.0.0.56:53 resolves the whole realmta world through it.
#
#   dnssec.sh start|stop|status|env      (STATE is exported by realmta.sh; root for start/stop)
#
# unbound knows the trust anchors (DS) of the signed zones only: `test` itself (dnsmasq on
# 127.0.0.53) stays unsigned, so every name there is insecure (no AD bit), and each TLSA name
# below is a zone of its own, cut out of `test` by a stub-zone:
#
#   _25._tcp.mx1.accept.test       signed, TLSA 3 1 1 = the real Postfix's key   -> DANE ok
#   _25._tcp.mx-grey.greylist.test signed, TLSA 3 1 1 = a digest of nothing      -> mismatch
#   _25._tcp.mx-block.blocked.test unsigned (no anchor): answered without AD     -> unvalidated
#   _25._tcp.dead.fallback.test    signed, but unbound's anchor is another key   -> bogus
#
# unbound also carries the MTA-STS names of services/https.sh (local-data: the policy host's
# address and the _mta-sts TXT records) and SPF, DMARC and TLS-RPT records for accept.test
# (all right) and greylist.test (+all, p=none), so `--resolver 127.0.0.56` is the one resolver for
# `smtpprobe domain` against the real servers. Nothing is forwarded or asked off loopback.
set -euo pipefail

STATE=${STATE:-${SMTPPROBE_REALMTA_DIR:-/tmp/smtpprobe-realmta}}
DIR="$STATE/dnssec"
AUTH_ADDR=127.0.0.55
RESOLVER_ADDR=127.0.0.56
CORE_DNS=127.0.0.53
HTTPS_ADDR=127.0.0.57  # services/https.sh
SIGNED=(_25._tcp.mx1.accept.test _25._tcp.mx-grey.greylist.test _25._tcp.dead.fallback.test)
UNSIGNED=(_25._tcp.mx-block.blocked.test)
BOGUS=_25._tcp.dead.fallback.test

die() { echo "dnssec: $*" >&2; exit 1; }

quiet() { # run a chatty command; show its output only when it fails
    local out
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; die "failed: $*"; }
}

# SHA-256 of the SubjectPublicKeyInfo of a PEM certificate (TLSA selector 1, matching type 1).
spki_sha256() {
    openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER \
        | openssl dgst -sha256 -r | cut -d' ' -f1
}

zone_file() { # NAME TLSA-DATA
    cat <<EOF
\$TTL 300
@ IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 300
@ IN NS ns1.test.
@ IN TLSA 3 1 1 $2
EOF
}

render() {
    mkdir -p "$DIR/keys"
    chmod 755 "$DIR"
    local mx1_pem="$STATE/postfix/tls/mx1.pem"
    [[ -s "$mx1_pem" ]] || die "no $mx1_pem: start the core realmta servers first"
    local good wrong
    good=$(spki_sha256 "$mx1_pem")
    wrong=$(printf 'no certificate has this key' | openssl dgst -sha256 -r | cut -d' ' -f1)
    : >"$DIR/anchors.ds"
    local zone data
    for zone in "${SIGNED[@]}" "${UNSIGNED[@]}"; do
        case $zone in
            _25._tcp.mx1.accept.test) data=$good ;;
            *) data=$wrong ;;
        esac
        zone_file "$zone" "$data" >"$DIR/$zone.db"
    done
    for zone in "${SIGNED[@]}"; do
        if ! ls "$DIR/keys/K$zone."+013+*.key >/dev/null 2>&1; then
            quiet dnssec-keygen -q -K "$DIR/keys" -a ECDSAP256SHA256 -f KSK "$zone"
        fi
        local key
        key=$(ls "$DIR/keys/K$zone."+013+*.key | head -1)
        # One key (KSK, also signing the records): a signed zone with its DNSKEY.
        cat "$key" >>"$DIR/$zone.db"
        # -d: the DS set goes to the state directory, not to the caller's working directory.
        quiet dnssec-signzone -z -Q -K "$DIR/keys" -d "$DIR" -o "$zone" -f "$DIR/$zone.db.signed" \
            -e +2592000 "$DIR/$zone.db" "$key"
        if [[ $zone == "$BOGUS" ]]; then
            # The anchor of a key the zone is not signed with: validation must fail (bogus).
            if [[ ! -s "$DIR/keys/other.key" ]]; then
                mkdir -p "$DIR/keys/other"
                quiet dnssec-keygen -q -K "$DIR/keys/other" -a ECDSAP256SHA256 -f KSK "$zone"
                cp "$(ls "$DIR/keys/other/K$zone."+013+*.key | head -1)" "$DIR/keys/other.key"
            fi
            dnssec-dsfromkey -2 "$DIR/keys/other.key" >>"$DIR/anchors.ds"
        else
            dnssec-dsfromkey -2 "$key" >>"$DIR/anchors.ds"
        fi
    done
    {
        cat <<EOF
options {
    directory "$DIR";
    pid-file none;
    session-keyfile "$DIR/session.key";
    listen-on port 53 { $AUTH_ADDR; };
    listen-on-v6 { none; };
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer { none; };
};
controls { };
EOF
        for zone in "${SIGNED[@]}"; do
            printf 'zone "%s" { type primary; file "%s.db.signed"; };\n' "$zone" "$zone"
        done
        for zone in "${UNSIGNED[@]}"; do
            printf 'zone "%s" { type primary; file "%s.db"; };\n' "$zone" "$zone"
        done
    } >"$DIR/named.conf"
    {
        cat <<EOF
server:
    interface: $RESOLVER_ADDR
    port: 53
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "$DIR"
    pidfile: "$DIR/unbound.pid"
    use-syslog: no
    logfile: "$DIR/unbound.log"
    verbosity: 1
    do-not-query-localhost: no
    module-config: "validator iterator"
    trust-anchor-file: "$DIR/anchors.ds"
    qname-minimisation: no
    # unbound answers the special-use names itself (RFC 6761); the realmta world lives there.
    local-zone: "test." nodefault
    local-zone: "127.in-addr.arpa." nodefault
    cache-max-ttl: 5
    cache-max-negative-ttl: 1
    local-data: "mta-sts.accept.test. 60 IN A $HTTPS_ADDR"
    local-data: "mta-sts.greylist.test. 60 IN A $HTTPS_ADDR"
    local-data: '_mta-sts.accept.test. 60 IN TXT "v=STSv1; id=realmta1"'
    local-data: '_mta-sts.greylist.test. 60 IN TXT "v=STSv1; id=realmta1"'
    # SPF, DMARC and TLS-RPT: accept.test right, greylist.test wrong (typetransparent: the
    # other names and types of these domains still come from dnsmasq).
    local-zone: "accept.test." typetransparent
    local-zone: "greylist.test." typetransparent
    local-data: 'accept.test. 60 IN TXT "v=spf1 ip4:127.0.0.11 -all"'
    local-data: '_dmarc.accept.test. 60 IN TXT "v=DMARC1; p=reject; rua=mailto:postmaster@accept.test"'
    local-data: '_smtp._tls.accept.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@accept.test"'
    local-data: 'greylist.test. 60 IN TXT "v=spf1 a +all"'
    local-data: '_dmarc.greylist.test. 60 IN TXT "v=DMARC1; p=none"'
remote-control:
    control-enable: no
stub-zone:
    name: "test"
    stub-addr: $CORE_DNS@53
stub-zone:
    name: "127.in-addr.arpa"
    stub-addr: $CORE_DNS@53
EOF
        for zone in "${SIGNED[@]}" "${UNSIGNED[@]}"; do
            printf 'stub-zone:\n    name: "%s"\n    stub-addr: %s@53\n' "$zone" "$AUTH_ADDR"
        done
    } >"$DIR/unbound.conf"
}

running() { # PIDFILE
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

answers() { # SERVER NAME TYPE [dig options]
    local server=$1 name=$2 type=$3
    shift 3
    dig +time=1 +tries=1 "@$server" "$name" "$type" "$@" 2>/dev/null
}

wait_for() { # SERVER NAME
    local _
    for _ in $(seq 1 50); do
        answers "$1" "$2" TLSA +short | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

add_address() { # ADDRESS: bind9 listens only on addresses configured on an interface
    local addrs
    addrs=$(ip -o addr show dev lo)
    if [[ "$addrs" != *" $1/32 "* ]]; then
        ip addr add "$1/32" dev lo || die "cannot add $1 to lo; a container needs CAP_NET_ADMIN"
    fi
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || die "start needs root"
    render
    add_address "$AUTH_ADDR"
    add_address "$RESOLVER_ADDR"
    named-checkconf "$DIR/named.conf" || die "named.conf does not check"
    if ! running "$DIR/named.pid"; then
        # -g: foreground, log to stderr (no syslog here); its pid is ours to record.
        setsid named -g -c "$DIR/named.conf" -u root >"$DIR/named.log" 2>&1 </dev/null &
        echo $! >"$DIR/named.pid"
    else
        kill -HUP "$(cat "$DIR/named.pid")"
    fi
    quiet unbound-checkconf "$DIR/unbound.conf"
    if running "$DIR/unbound.pid"; then
        kill "$(cat "$DIR/unbound.pid")" 2>/dev/null || true
        sleep 0.3
    fi
    setsid unbound -c "$DIR/unbound.conf" >>"$DIR/unbound.log" 2>&1 </dev/null
    wait_for "$AUTH_ADDR" "_25._tcp.mx1.accept.test" \
        || { tail -20 "$DIR/named.log" >&2; die "bind9 does not answer on $AUTH_ADDR"; }
    wait_for "$RESOLVER_ADDR" "_25._tcp.mx1.accept.test" \
        || { tail -20 "$DIR/unbound.log" >&2; die "unbound does not answer on $RESOLVER_ADDR"; }
    echo "dnssec: bind9 on $AUTH_ADDR, validating unbound on $RESOLVER_ADDR"
}

stop_pid() { # PIDFILE NAME
    if running "$1"; then
        kill "$(cat "$1")" 2>/dev/null || true
        local _
        for _ in $(seq 1 30); do
            running "$1" || break
            sleep 0.1
        done
    fi
    rm -f "$1"
}

cmd_stop() {
    stop_pid "$DIR/unbound.pid" unbound
    stop_pid "$DIR/named.pid" named
}

cmd_status() {
    local bad=0 flags
    flags=$(answers "$RESOLVER_ADDR" _25._tcp.mx1.accept.test TLSA +dnssec | grep -m1 ';; flags:' || true)
    if [[ $flags == *" ad"* ]]; then
        echo "dnssec: unbound $RESOLVER_ADDR validates _25._tcp.mx1.accept.test (ad)"
    else
        echo "dnssec: unbound $RESOLVER_ADDR: no validated TLSA answer ($flags)"
        bad=1
    fi
    if answers "$RESOLVER_ADDR" "$BOGUS" TLSA | grep -q 'status: SERVFAIL'; then
        echo "dnssec: $BOGUS is bogus (SERVFAIL), as it should be"
    else
        echo "dnssec: $BOGUS is not bogus"
        bad=1
    fi
    return $bad
}

cmd_env() {
    printf 'export SMTPPROBE_DNSSEC_RESOLVER=%q\n' "$RESOLVER_ADDR"
    printf 'export SMTPPROBE_DNSSEC_AUTHORITATIVE=%q\n' "$AUTH_ADDR"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
