#!/usr/bin/env bash
# Real Postfix + postgrey + dnsmasq on loopback for smtpprobe's tests. See README.md.
#
#   realmta.sh start    render configs, create CA/password on first use, start what is not
#                       running, wait until every listener answers (safe to run twice)
#   realmta.sh stop     stop Postfix, postgrey and dnsmasq; keep the state directory
#   realmta.sh status   one line per listener; exit 1 if any is not as documented
#   realmta.sh env      print `export` lines for the SMTPPROBE_REALMTA_* variables
#
# State lives in ${SMTPPROBE_REALMTA_DIR:-/tmp/smtpprobe-realmta}. Needs root (binds port 25,
# adds 127.0.0.53 to lo, creates a mount namespace). The password is never printed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${SMTPPROBE_REALMTA_DIR:-/tmp/smtpprobe-realmta}
WAIT_SECONDS=${SMTPPROBE_REALMTA_WAIT:-30}

DNS_ADDR=127.0.0.53
SASL_USER=probe
SASL_REALM=accept.test
POSTGREY_LISTEN=127.0.0.13:10023
POSTGREY_DELAY=2

PF_CONF="$STATE/postfix"

die() {
    echo "realmta: $*" >&2
    exit 1
}

check_state_path() {
    # Postfix wants an absolute path, and the path is pasted into config files by sed.
    [[ "$STATE" =~ ^/[A-Za-z0-9._/-]+$ ]] \
        || die "SMTPPROBE_REALMTA_DIR must be an absolute path of [A-Za-z0-9._/-], got: $STATE"
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "$1 needs root"
}

quiet() { # run a chatty command; show its output only when it fails
    local out
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; die "failed: $*"; }
}

render() { # render TEMPLATE DEST
    sed "s#@STATE@#$STATE#g" "$1" >"$2.tmp"
    mv "$2.tmp" "$2"
}

# ---------------------------------------------------------------- one-time material

make_ca_and_certs() {
    local tls="$PF_CONF/tls"
    mkdir -p "$tls"
    chmod 700 "$tls"
    if [[ -s "$STATE/ca.pem" && -s "$STATE/ca-key.pem" ]] \
        && openssl x509 -in "$STATE/ca.pem" -noout -checkend 604800 >/dev/null; then
        :
    else
        echo "realmta: creating test CA in $STATE/ca.pem"
        (umask 077 \
            && quiet openssl ecparam -name prime256v1 -genkey -noout -out "$STATE/ca-key.pem")
        # keyUsage and a critical basicConstraints: Python 3.13's default context sets
        # VERIFY_X509_STRICT, which refuses CA certificates without them.
        quiet openssl req -x509 -new -key "$STATE/ca-key.pem" -sha256 -days 3650 \
            -subj "/O=smtpprobe realmta/CN=smtpprobe realmta test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" \
            -out "$STATE/ca.pem"
        chmod 644 "$STATE/ca.pem"
        rm -f "$tls"/*.pem
    fi
    local name sans
    for name in mx1 mx-grey mx-block; do
        case $name in
            mx1) sans="DNS:mx1.accept.test,DNS:smtp.accept.test" ;;
            mx-grey) sans="DNS:mx-grey.greylist.test" ;;
            mx-block) sans="DNS:mx-block.blocked.test" ;;
        esac
        if [[ -s "$tls/$name.pem" ]] \
            && openssl x509 -in "$tls/$name.pem" -noout -checkend 604800 >/dev/null 2>&1; then
            continue
        fi
        local key="$tls/$name.key" csr="$tls/$name.csr" crt="$tls/$name.crt" ext="$tls/$name.ext"
        (umask 077 && quiet openssl ecparam -name prime256v1 -genkey -noout -out "$key")
        local cn=${sans%%,*}
        quiet openssl req -new -key "$key" -subj "/CN=${cn#DNS:}" -out "$csr"
        cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=$sans
EOF
        quiet openssl x509 -req -in "$csr" -CA "$STATE/ca.pem" -CAkey "$STATE/ca-key.pem" \
            -CAcreateserial -CAserial "$tls/serial" -days 825 -sha256 -extfile "$ext" \
            -out "$crt"
        # smtpd_tls_chain_files: the private key first, then the certificate.
        (umask 077 && cat "$key" "$crt" >"$tls/$name.pem")
        rm -f "$csr" "$ext" "$key"
    done
}

make_password_and_sasldb() {
    if [[ ! -s "$STATE/password" ]]; then
        # 16 random bytes as 32 hex digits: nothing that needs quoting anywhere.
        (umask 077 && openssl rand -hex 16 | tr -d '\n' >"$STATE/password.tmp")
        mv "$STATE/password.tmp" "$STATE/password"
        rm -f "$STATE/sasldb2"
    fi
    chmod 600 "$STATE/password"
    if [[ ! -s "$STATE/sasldb2" ]]; then
        # -p reads the password from stdin: it never appears in argv or on a terminal.
        saslpasswd2 -p -c -f "$STATE/sasldb2" -u "$SASL_REALM" "$SASL_USER" <"$STATE/password"
    fi
    # smtpd runs as postfix and opens the sasldb itself (auxprop, no saslauthd).
    chown root:postfix "$STATE/sasldb2"
    chmod 640 "$STATE/sasldb2"
}

prepare() {
    check_state_path
    mkdir -p "$STATE" "$PF_CONF/sasl" "$STATE/spool" "$STATE/data" "$STATE/postgrey"
    chmod 755 "$STATE"
    render "$HERE/templates/main.cf.in" "$PF_CONF/main.cf"
    render "$HERE/templates/master.cf.in" "$PF_CONF/master.cf"
    render "$HERE/templates/smtpd.conf.in" "$PF_CONF/sasl/smtpd.conf"
    render "$HERE/templates/dnsmasq.conf.in" "$STATE/dnsmasq.conf"
    local map
    for map in mailboxes recipient_access sender_login client_block; do
        cp "$HERE/maps/$map" "$PF_CONF/$map"
    done
    make_ca_and_certs
    make_password_and_sasldb
    chown postfix:postfix "$STATE/data"
    : >"$STATE/postgrey/whitelist_clients"
    : >"$STATE/postgrey/whitelist_recipients"
    chown -R postgrey:postgrey "$STATE/postgrey"
    printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$DNS_ADDR" >"$STATE/resolv.conf"
    chmod 644 "$STATE/resolv.conf"
}

# ---------------------------------------------------------------- processes

# Run a command in a private mount namespace where /etc/resolv.conf names only 127.0.0.53,
# so Postfix's and postgrey's lookups never leave the machine. Daemons started here keep
# the namespace alive; nothing else on the machine sees the bind mount.
NS_CMD=(unshare --mount --propagation private -- sh -c
        'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$STATE/resolv.conf")

pid_alive() { # pid_alive PIDFILE NAME: the pid in PIDFILE runs a command line naming NAME
    local pid
    [[ -s "$1" ]] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ "$cmdline" == *"$2"* ]]
}

postfix_running() {
    # Not `postfix status`: it takes over a second here. master.pid holds the pid padded
    # with spaces; the master process names itself "master".
    pid_alive "$STATE/spool/pid/master.pid" master
}

start_dnsmasq() {
    # (No `| grep -q` under pipefail: grep quitting early can fail the pipeline.)
    local addrs
    addrs=$(ip -o addr show dev lo)
    if [[ "$addrs" != *" $DNS_ADDR/32 "* ]]; then
        # dnsmasq answers authoritatively only on an address configured on an interface.
        ip addr add "$DNS_ADDR/32" dev lo \
            || die "cannot add $DNS_ADDR to lo; a container needs CAP_NET_ADMIN"
    fi
    if pid_alive "$STATE/dnsmasq.pid" dnsmasq; then
        return
    fi
    dnsmasq --test -C "$STATE/dnsmasq.conf" >/dev/null 2>&1 \
        || { dnsmasq --test -C "$STATE/dnsmasq.conf"; die "dnsmasq config check failed"; }
    dnsmasq -C "$STATE/dnsmasq.conf" || die "dnsmasq did not start (see $STATE/dnsmasq.log)"
}

start_postfix() {
    if postfix_running; then
        return
    fi
    if ! postfix -c "$PF_CONF" check >/dev/null 2>&1; then
        # Postfix prints its diagnostics only to a terminal (or syslog, absent here).
        script -qec "postfix -c $PF_CONF check" /dev/null >&2 || true
        die "postfix check failed for $PF_CONF"
    fi
    "${NS_CMD[@]}" postfix -c "$PF_CONF" start >>"$STATE/postfix-start.log" 2>&1 \
        || die "postfix did not start (see $STATE/postfix-start.log and $STATE/postfix.log)"
}

start_postgrey() {
    local pidfile="$STATE/postgrey.pid"
    if pid_alive "$pidfile" postgrey; then
        return
    fi
    # Not --daemonize: that would send the log to syslog, which does not exist here, and
    # postgrey writes --pidfile only when it daemonizes. So the shell that execs postgrey
    # writes the pid itself, and setsid detaches it from this script.
    setsid unshare --mount --propagation private -- sh -c \
        'mount --bind "$0" /etc/resolv.conf && echo $$ >"$1" && shift && exec "$@"' \
        "$STATE/resolv.conf" "$pidfile" \
        postgrey --inet="$POSTGREY_LISTEN" \
        --dbdir="$STATE/postgrey" --delay="$POSTGREY_DELAY" --auto-whitelist-clients=0 \
        --whitelist-clients="$STATE/postgrey/whitelist_clients" \
        --whitelist-recipients="$STATE/postgrey/whitelist_recipients" \
        --hostname=mx-grey.greylist.test --user=postgrey --group=postgrey \
        </dev/null >>"$STATE/postgrey.log" 2>&1 &
}

stop_pidfile() { # stop_pidfile PIDFILE NAME
    local pid i
    pid_alive "$1" "$2" || return 0
    pid=$(tr -dc 0-9 <"$1")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -d "/proc/$pid" ]] || break
        sleep 0.1
    done
    if [[ -d "/proc/$pid" ]]; then
        echo "realmta: $2 (pid $pid) ignored SIGTERM, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# ---------------------------------------------------------------- probes

# Read the first reply line of a plain-text SMTP listener, then say QUIT.
smtp_banner() { # smtp_banner IP PORT
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        IFS= read -r -t 2 line <&3 || exit 1
        printf "QUIT\r\n" >&3
        printf "%s\n" "${line%$'"'"'\r'"'"'}"
    ' "$1" "$2" 2>/dev/null
}

# The banner of the implicit-TLS listener, with the chain and name checked against our CA.
tls_banner() { # tls_banner IP PORT NAME
    printf 'QUIT\r\n' | timeout 5 openssl s_client -connect "$1:$2" -servername "$3" \
        -verify_hostname "$3" -CAfile "$STATE/ca.pem" -verify_return_error -quiet 2>/dev/null \
        | head -n 1 | tr -d '\r'
}

tcp_open() { # tcp_open IP PORT
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

dns_answer() {
    dig +time=1 +tries=1 +short "@$DNS_ADDR" MX accept.test 2>/dev/null
}

# Each check prints one status line and returns 0 when the listener is as documented.
LISTENERS=(dns mx1 submission submissions dead grey policy block mx1v6 dual utf8)

check_one() {
    local line
    case $1 in
        dns)
            line=$(dns_answer || true)
            if [[ "$line" == "10 mx1.accept.test." ]]; then
                printf '%-12s %-17s up    MX accept.test -> %s\n' dns "$DNS_ADDR:53" "$line"
            else
                printf '%-12s %-17s DOWN  no answer for MX accept.test\n' dns "$DNS_ADDR:53"
                return 1
            fi ;;
        mx1 | submission | grey | block | mx1v6 | dual | utf8)
            local addr
            case $1 in
                mx1) addr=127.0.0.11:25 ;;
                submission) addr=127.0.0.11:587 ;;
                grey) addr=127.0.0.13:25 ;;
                block) addr=127.0.0.14:25 ;;
                mx1v6) addr=::1:25 ;;  # issue 15: IPv6, SMTPUTF8
                dual) addr=127.0.0.16:25 ;;
                utf8) addr=127.0.0.15:25 ;;
            esac
            line=$(smtp_banner "${addr%:*}" "${addr##*:}" || true)
            if [[ "$line" == 220* ]]; then
                printf '%-12s %-17s up    %s\n' "$1" "$addr" "$line"
            else
                printf '%-12s %-17s DOWN  no 220 banner%s\n' "$1" "$addr" "${line:+ (got: $line)}"
                return 1
            fi ;;
        submissions)
            line=$(tls_banner 127.0.0.11 465 smtp.accept.test || true)
            if [[ "$line" == 220* ]]; then
                printf '%-12s %-17s up    %s (TLS verified)\n' submissions 127.0.0.11:465 "$line"
            else
                printf '%-12s %-17s DOWN  no verified TLS banner\n' submissions 127.0.0.11:465
                return 1
            fi ;;
        dead)
            if tcp_open 127.0.0.12 25; then
                printf '%-12s %-17s WRONG something listens; it must refuse\n' dead 127.0.0.12:25
                return 1
            fi
            printf '%-12s %-17s refused (as intended)\n' dead 127.0.0.12:25 ;;
        policy)
            if tcp_open "${POSTGREY_LISTEN%:*}" "${POSTGREY_LISTEN#*:}"; then
                printf '%-12s %-17s up    postgrey, delay %ss\n' policy "$POSTGREY_LISTEN" \
                    "$POSTGREY_DELAY"
            else
                printf '%-12s %-17s DOWN  postgrey not listening\n' policy "$POSTGREY_LISTEN"
                return 1
            fi ;;
    esac
}

check_all() {
    local name bad=0
    for name in "${LISTENERS[@]}"; do
        check_one "$name" || bad=1
    done
    return $bad
}

wait_ready() {
    local deadline=$((SECONDS + WAIT_SECONDS)) name pending
    while :; do
        pending=()
        for name in "${LISTENERS[@]}"; do
            check_one "$name" >/dev/null || pending+=("$name")
        done
        [[ ${#pending[@]} -eq 0 ]] && return 0
        if ((SECONDS >= deadline)); then
            echo "realmta: not ready after ${WAIT_SECONDS}s: ${pending[*]}" >&2
            check_all >&2 || true
            echo "realmta: last lines of the logs in $STATE:" >&2
            tail -n 5 "$STATE/postfix.log" "$STATE/postfix-start.log" "$STATE/postgrey.log" \
                "$STATE/dnsmasq.log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------- commands

check_privileges() {
    # Without a private mount namespace Postfix would resolve through the machine's own
    # resolv.conf, i.e. off this machine. Refuse rather than fall back.
    unshare --mount --propagation private -- true 2>/dev/null \
        || die "cannot create a mount namespace (unshare -m); a container needs CAP_SYS_ADMIN"
}

# More real servers (DNSSEC, HTTPS, SOCKS5, Prometheus ...) each live in their own script in
# services/: `services/NAME.sh start|stop|status|env`, run in name order after the core ones;
# their Debian packages are listed in services/NAME.packages (read by install-deps.sh).
services() {
    local script
    for script in "$HERE"/services/*.sh; do
        [[ -e "$script" ]] || continue
        STATE=$STATE bash "$script" "$@" || return 1
    done
}

cmd_start() {
    need_root start
    check_privileges
    prepare
    start_dnsmasq
    start_postfix
    start_postgrey
    wait_ready || exit 1
    services start || exit 1
    echo "realmta: ready (state in $STATE)"
}

cmd_stop() {
    need_root stop
    check_state_path
    if postfix_running; then
        postfix -c "$PF_CONF" stop >>"$STATE/postfix-start.log" 2>&1 || true
    fi
    stop_pidfile "$STATE/postgrey.pid" postgrey
    stop_pidfile "$STATE/dnsmasq.pid" dnsmasq
    services stop || true
    echo "realmta: stopped (state kept in $STATE)"
}

cmd_status() {
    check_state_path
    local bad=0
    check_all || bad=1
    services status || bad=1
    return $bad
}

cmd_env() {
    check_state_path
    local var value
    for var in SMTPPROBE_REALMTA SMTPPROBE_REALMTA_DIR SMTPPROBE_REALMTA_RESOLVER \
        SMTPPROBE_REALMTA_CA SMTPPROBE_REALMTA_USER SMTPPROBE_REALMTA_PASSWORD_FILE; do
        case $var in
            SMTPPROBE_REALMTA) value=1 ;;
            SMTPPROBE_REALMTA_DIR) value=$STATE ;;
            SMTPPROBE_REALMTA_RESOLVER) value=$DNS_ADDR ;;
            SMTPPROBE_REALMTA_CA) value=$STATE/ca.pem ;;
            SMTPPROBE_REALMTA_USER) value=$SASL_USER@$SASL_REALM ;;
            SMTPPROBE_REALMTA_PASSWORD_FILE) value=$STATE/password ;;
        esac
        printf 'export %s=%q\n' "$var" "$value"
    done
    services env
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2 ;;
esac
