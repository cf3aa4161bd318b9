#!/usr/bin/env bash
# A real Prometheus (the Debian package) on loopback, for tests/realmta/test_prometheus_realmta.py
# (issue 13): it scrapes `smtpprobe exporter` the way docs/monitoring.md says, with the
# blackbox-style relabelling of __param_target, every 2 seconds.
#
#   prometheus.sh start|stop|status|env     (STATE is exported by realmta.sh)
#
# Prometheus runs as a plain process (no systemd), listens on 127.0.0.1:19090 only, keeps its
# data under $STATE/prometheus/data, and finds its targets in the file_sd files
# $STATE/prometheus/targets/*.json, which a test writes for the exporter it starts on a port
# of its own; Prometheus re-reads them within a second (inotify, refresh_interval 1s).
# Each entry is {"targets": ["<smtp target>"], "labels": {"module": "<module>",
# "__exporter": "127.0.0.1:<port>"}}.
set -euo pipefail

: "${STATE:?STATE must be set (realmta.sh exports it)}"
DIR="$STATE/prometheus"
ADDR=127.0.0.1
PORT=19090

die() { echo "prometheus: $*" >&2; exit 1; }

running() {
    [[ -s "$DIR/prometheus.pid" ]] && kill -0 "$(cat "$DIR/prometheus.pid")" 2>/dev/null
}

listening() {
    (exec 3<>"/dev/tcp/$ADDR/$PORT") 2>/dev/null
}

write_config() {
    mkdir -p "$DIR/data" "$DIR/targets"
    cat >"$DIR/prometheus.yml" <<CONF
# Written by tests/realmta/services/prometheus.sh; the same relabelling as docs/monitoring.md.
global:
  # 2 s: the exporter's budget is the timeout less its 0.5 s margin, ample for loopback.
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 1s
scrape_configs:
  - job_name: smtpprobe
    metrics_path: /probe
    file_sd_configs:
      - files: ["$DIR/targets/*.json"]
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [module]
        target_label: __param_module
      - source_labels: [__param_target]
        target_label: instance
      - source_labels: [__exporter]
        target_label: __address__
CONF
}

cmd_start() {
    command -v prometheus >/dev/null || die "not installed (apt-get install prometheus)"
    if running && listening; then
        return 0
    fi
    write_config
    # No lookups beyond loopback: no remote write, no service discovery but the files.
    setsid prometheus --config.file="$DIR/prometheus.yml" \
        --storage.tsdb.path="$DIR/data" --storage.tsdb.retention.time=1d \
        --web.listen-address="$ADDR:$PORT" --web.enable-lifecycle \
        --log.level=warn >>"$DIR/prometheus.log" 2>&1 </dev/null &
    echo $! >"$DIR/prometheus.pid"
    local i
    for i in $(seq 1 100); do
        if listening; then
            return 0
        fi
        running || break
        sleep 0.1
    done
    tail -n 20 "$DIR/prometheus.log" >&2 || true
    die "does not listen on $ADDR:$PORT"
}

cmd_stop() {
    if running; then
        local pid
        pid=$(cat "$DIR/prometheus.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$DIR/prometheus.pid"
}

cmd_status() {
    if running && listening; then
        echo "prometheus: up on $ADDR:$PORT"
    else
        echo "prometheus: DOWN ($ADDR:$PORT)"
        return 1
    fi
}

cmd_env() {
    echo "export SMTPPROBE_PROMETHEUS_URL=http://$ADDR:$PORT"
    echo "export SMTPPROBE_PROMETHEUS_TARGETS=$DIR/targets"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
