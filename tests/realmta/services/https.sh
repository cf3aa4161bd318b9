#!/usr/bin/env bash
# A real HTTPS server (nginx) on 127.0.0.57:443 serving MTA-STS policies (RFC 8461 3.3) with a
# certificate from the realmta CA.
#
#   https.sh start|stop|status|env      (STATE is exported by realmta.sh; root for start/stop)
#
#   https://mta-sts.accept.test/.well-known/mta-sts.txt    enforce, mx: mx1.accept.test  (good)
#   https://mta-sts.greylist.test/.well-known/mta-sts.txt  enforce, mx: mx1.accept.test, but
#                                                          the MX is mx-grey.greylist.test
#
# The names mta-sts.<domain> and the _mta-sts TXT records are in services/dnssec.sh's unbound
# (127.0.0.56), the resolver of the `smtpprobe domain` tests against the real servers.
set -euo pipefail

STATE=${STATE:-${SMTPPROBE_REALMTA_DIR:-/tmp/smtpprobe-realmta}}
DIR="$STATE/https"
ADDR=127.0.0.57
DOMAINS=(accept.test greylist.test)

die() { echo "https: $*" >&2; exit 1; }

quiet() {
    local out
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; die "failed: $*"; }
}

make_cert() {
    [[ -s "$STATE/ca.pem" && -s "$STATE/ca-key.pem" ]] || die "no realmta CA in $STATE"
    if [[ -s "$DIR/server.crt" ]] \
        && openssl verify -CAfile "$STATE/ca.pem" "$DIR/server.crt" >/dev/null 2>&1 \
        && openssl x509 -in "$DIR/server.crt" -noout -checkend 604800 >/dev/null; then
        return
    fi
    local sans="" domain
    for domain in "${DOMAINS[@]}"; do
        sans+="${sans:+,}DNS:mta-sts.$domain"
    done
    (umask 077 && quiet openssl ecparam -name prime256v1 -genkey -noout -out "$DIR/server.key")
    quiet openssl req -new -key "$DIR/server.key" -subj "/CN=mta-sts.${DOMAINS[0]}" \
        -out "$DIR/server.csr"
    cat >"$DIR/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=$sans
EOF
    quiet openssl x509 -req -in "$DIR/server.csr" -CA "$STATE/ca.pem" -CAkey "$STATE/ca-key.pem" \
        -CAcreateserial -CAserial "$DIR/serial" -days 825 -sha256 -extfile "$DIR/server.ext" \
        -out "$DIR/server.crt"
    rm -f "$DIR/server.csr" "$DIR/server.ext"
}

render() {
    mkdir -p "$DIR/tmp" "$DIR/www"
    make_cert
    local domain
    for domain in "${DOMAINS[@]}"; do
        mkdir -p "$DIR/www/$domain/.well-known"
        # Both policies name only mx1.accept.test: right for accept.test, wrong for greylist.test.
        printf 'version: STSv1\r\nmode: enforce\r\nmx: mx1.accept.test\r\nmax_age: 604800\r\n' \
            >"$DIR/www/$domain/.well-known/mta-sts.txt"
    done
    chmod -R a+rX "$DIR/www"
    {
        cat <<EOF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log;
events { worker_connections 64; }
http {
    access_log $DIR/access.log;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    types { text/plain txt; }
    default_type application/octet-stream;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $DIR/server.crt;
    ssl_certificate_key $DIR/server.key;
EOF
        for domain in "${DOMAINS[@]}"; do
            cat <<EOF
    server {
        listen $ADDR:443 ssl;
        server_name mta-sts.$domain;
        root $DIR/www/$domain;
    }
EOF
        done
        echo "}"
    } >"$DIR/nginx.conf"
}

running() {
    [[ -s "$DIR/nginx.pid" ]] && kill -0 "$(cat "$DIR/nginx.pid")" 2>/dev/null
}

fetch() { # DOMAIN: the policy over verified HTTPS, as a sender fetches it
    curl -sS --max-time 3 --cacert "$STATE/ca.pem" \
        --resolve "mta-sts.$1:443:$ADDR" "https://mta-sts.$1/.well-known/mta-sts.txt" 2>&1
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || die "start needs root"
    render
    quiet nginx -t -q -p "$DIR" -c "$DIR/nginx.conf"
    if running; then
        kill -HUP "$(cat "$DIR/nginx.pid")"
    else
        nginx -p "$DIR" -c "$DIR/nginx.conf" || die "nginx did not start (see $DIR/error.log)"
    fi
    local _
    for _ in $(seq 1 50); do
        fetch accept.test | grep -q "mode: enforce" && {
            echo "https: nginx on $ADDR:443 serves the MTA-STS policies"
            return 0
        }
        sleep 0.1
    done
    tail -20 "$DIR/error.log" >&2
    die "no policy from https://mta-sts.accept.test on $ADDR"
}

cmd_stop() {
    if running; then
        kill -QUIT "$(cat "$DIR/nginx.pid")" 2>/dev/null || true
        local _
        for _ in $(seq 1 30); do
            running || break
            sleep 0.1
        done
    fi
}

cmd_status() {
    local domain bad=0
    for domain in "${DOMAINS[@]}"; do
        if fetch "$domain" | grep -q "mode: enforce"; then
            echo "https: https://mta-sts.$domain/.well-known/mta-sts.txt ok"
        else
            echo "https: https://mta-sts.$domain/.well-known/mta-sts.txt not served"
            bad=1
        fi
    done
    return $bad
}

cmd_env() {
    printf 'export SMTPPROBE_HTTPS_ADDRESS=%q\n' "$ADDR"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
