#!/usr/bin/env bash
# Two real SOCKS5 servers on loopback in front of the realmta Postfix (issue 15):
#
#   dante (danted)  127.0.0.60:1080  no login; its rules refuse 127.0.0.13:25 (the grey
#                                    listener) with RFC 1928 reply 2, "not allowed by ruleset"
#   microsocks      127.0.0.61:1080  user name and password (RFC 1929): user `probe`, the
#                                    password random in $STATE/socks-password (mode 600)
#
#   socks.sh start|stop|status|env     (STATE is exported by realmta.sh)
#
# Both connect onward from 127.0.0.1 and only to what the test installation serves; nothing
# listens beyond loopback. microsocks takes its password as an argument and overwrites it in
# its own argv at start-up, so `ps` does not show it.
set -euo pipefail

: "${STATE:?STATE must be set (realmta.sh exports it)}"
DIR="$STATE/socks"
DANTE_ADDR=127.0.0.60
MICRO_ADDR=127.0.0.61
PORT=1080
SOCKS_USER=probe

die() { echo "socks: $*" >&2; exit 1; }

running() { # PIDFILE
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

listening() { # ADDR
    (exec 3<>"/dev/tcp/$1/$PORT") 2>/dev/null
}

start_dante() {
    running "$DIR/danted.pid" && return 0
    cat >"$DIR/danted.conf" <<CONF
logoutput: $DIR/danted.log
internal: $DANTE_ADDR port = $PORT
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks block { from: 0.0.0.0/0 to: 127.0.0.13/32 port = 25 log: connect error }
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 log: connect error }
CONF
    danted -f "$DIR/danted.conf" -p "$DIR/danted.pid" -D
}

start_microsocks() {
    running "$DIR/microsocks.pid" && return 0
    if [[ ! -s "$STATE/socks-password" ]]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$STATE/socks-password")
    fi
    local password
    password=$(cat "$STATE/socks-password")
    setsid microsocks -i "$MICRO_ADDR" -p "$PORT" -b 127.0.0.1 -u "$SOCKS_USER" -P "$password" \
        >>"$DIR/microsocks.log" 2>&1 </dev/null &
    echo $! >"$DIR/microsocks.pid"
}

wait_ready() {
    local i
    for i in $(seq 1 50); do
        if listening "$DANTE_ADDR" && listening "$MICRO_ADDR"; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 5 "$DIR"/*.log >&2 || true
    die "a SOCKS server does not listen ($DANTE_ADDR:$PORT, $MICRO_ADDR:$PORT)"
}

stop_one() { # PIDFILE
    if running "$1"; then
        kill "$(cat "$1")" 2>/dev/null || true
    fi
    rm -f "$1"
}

status_line() { # NAME ADDR
    if listening "$2"; then
        echo "socks: $1 $2:$PORT listening"
    else
        echo "socks: $1 $2:$PORT NOT listening"
        return 1
    fi
}

case ${1:-} in
    start)
        command -v danted >/dev/null || die "danted is missing (apt-get install dante-server)"
        command -v microsocks >/dev/null || die "microsocks is missing (apt-get install microsocks)"
        mkdir -p "$DIR"
        start_dante
        start_microsocks
        wait_ready
        ;;
    stop)
        stop_one "$DIR/danted.pid"
        stop_one "$DIR/microsocks.pid"
        ;;
    status)
        bad=0
        status_line dante "$DANTE_ADDR" || bad=1
        status_line microsocks "$MICRO_ADDR" || bad=1
        exit $bad
        ;;
    env)
        printf 'export SMTPPROBE_REALMTA_SOCKS=%q\n' "socks5://$DANTE_ADDR:$PORT"
        printf 'export SMTPPROBE_REALMTA_SOCKS_AUTH=%q\n' "socks5://$SOCKS_USER@$MICRO_ADDR:$PORT"
        printf 'export SMTPPROBE_REALMTA_SOCKS_PASSWORD_FILE=%q\n' "$STATE/socks-password"
        ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
