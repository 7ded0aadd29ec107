#!/usr/bin/env bash
# firegate side by side with nginx and HAProxy on this machine, in one run.
#
#   benches/compare.sh [compare|rss|soak|profile|syscalls|all]
#
# compare  req/s at fixed concurrency (wrk -c32), p50/p99 at a fixed rate
#          (oha -q), proxy CPU seconds per 10k requests (/proc/PID/stat),
#          peak RSS; RUNS runs, medians; firegate as a ratio to nginx.
# rss      1,000 idle keep-alive connections; a streamed 1 GiB response.
# soak     SOAK seconds at RATE req/s, RSS sampled every 10 s.
# profile  perf record of firegate under the cache-hit GET load (PROFILE_MIX=commit:
#          the 50-write commit, run-query: the filtered query; PROFILE_CONFIG=nginx or hyper: that proxy instead);
#          top symbols and a flame graph (inferno, installed with cargo when missing).
# syscalls strace -c of nginx and firegate over SYSCALL_REQUESTS cache-hit
#          GETs (oha -c32), per request; per-thread user/system time.
# quick    nginx and firegate alternately, the one-token GET only (QUICK_MIX=cold-rs256
#          or cold-es256: firegate's and base's first sight instead), RUNS runs:
#          the ratio while working on the hot path (compare is the report).
#          QUICK_CONFIGS picks the configurations; `base` is firegate built
#          elsewhere (BASE_FIREGATE=path/to/firegate), for before/after;
#          BASE_RUST_LOG gives it its own log level (RUST_LOG, default warn,
#          is the others'); QUICK_MIX=commit or run-query measures that mix
#          instead of the GET.
# grpc     gRPC unary GetDocument (h2load, h2c) through nginx grpc_pass and
#          through firegate, the upstream an nginx answering a fixed Document;
#          proxy CPU seconds per 10k calls, firegate as a ratio to nginx.
# listen   LISTEN_STREAMS (10000) Listen streams through firegate to nginx
#          (http2_max_concurrent_streams 100) in front of `firegate emulator`:
#          streams answered, RSS per stream, idle CPU, unary p99 with and
#          without the listeners, reload re-judge time (benches/fixture/listen_load.rs).
#
# Every proxy runs pinned to core PROXY_CPU; load generator and the one
# upstream (nginx answering a fixed body) share LOAD_CPU. Installs nginx,
# haproxy and wrk with apt-get and oha with `cargo install --locked` when
# missing. Not part of scripts/test: these are timings.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

RUNS=${RUNS:-3}                # runs per configuration; medians reported
DURATION=${DURATION:-10}       # seconds per wrk / oha measurement
CONNECTIONS=${CONNECTIONS:-32} # wrk -c
RATE=${RATE:-1000}             # oha -q, requests per second (latency)
SOAK=${SOAK:-600}              # seconds of the soak
COLD=${COLD:-20000}            # first-sight tokens per algorithm
COLD_DURATION=${COLD_DURATION:-3} # seconds of a first-sight run (fewer requests than COLD)
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
work=${WORK:-$root/target/compare}
tools=$root/target/bench-tools

PORT_BASE=${PORT_BASE:-18080} # the ports below are PORT_BASE+0..11: two runs at once need two bases
UP_PORT=$PORT_BASE PROXY_PORT=$((PORT_BASE + 1)) ADMIN_PORT=$((PORT_BASE + 11))
UP_GRPC_PORT=$((PORT_BASE + 2)) EMULATOR_PORT=$((PORT_BASE + 3)) CAPPED_PORT=$((PORT_BASE + 4))
LISTEN_STREAMS=${LISTEN_STREAMS:-10000}
GRPC_CALLS=${GRPC_CALLS:-200000}  # h2load -n per run
grpc_path=/google.firestore.v1.Firestore/GetDocument
up="http://127.0.0.1:$UP_PORT"
proxy="http://127.0.0.1:$PROXY_PORT"
db_path="/v1/projects/p/databases/(default)/documents"
get_path="$db_path/catalog/entity"
commit_path="$db_path:commit"
query_path="$db_path/teams/payments:runQuery"

log() { printf '[compare] %s\n' "$*" >&2; }

install_tools() {
  local missing=()
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v perf >/dev/null || missing+=(linux-perf)
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  export PATH="$tools/bin:$PATH"
}

# oha, for the modes that use it (compare, soak, syscalls).
need_oha() {
  if ! command -v oha >/dev/null; then
    log "cargo install oha --locked (about 6 minutes)"
    cargo install oha --locked --root "$tools" >/dev/null
  fi
}

# inferno, for the profile mode's flame graph.
need_inferno() {
  if ! command -v inferno-flamegraph >/dev/null; then
    log "cargo install inferno --locked (under a minute)"
    cargo install inferno --locked --root "$tools" >/dev/null
  fi
}

build() {
  log "building firegate and the fixture (profile bench)"
  cargo build --quiet --profile bench --bin firegate --example bench_fixture --example hyper_floor \
    --example listen_load
  firegate=$root/target/release/firegate
}

fixture() {
  # The tokens name the upstream (their issuer) they were written for: a
  # fixture of another PORT_BASE is written again.
  if [ ! -s "$work/fixture/tokens-cold-es256.txt" ] ||
    [ "$(cat "$work/fixture/upstream" 2>/dev/null)" != "$up" ]; then
    log "writing keys, tokens, policies and bodies"
    rm -rf "$work/fixture"
    "$root/target/release/examples/bench_fixture" "$work/fixture" "$up" "$COLD" >/dev/null
    printf '%s' "$up" >"$work/fixture/upstream"
  fi
  fx=$work/fixture
  token=$(head -n1 "$fx/tokens-hit.txt")
  # A sparse 1 GiB file the upstream streams for the rss mode.
  [ -e "$work/big.bin" ] || truncate -s 1G "$work/big.bin"
  write_configs
}

write_configs() {
  mkdir -p "$work/nginx-up/logs" "$work/nginx-proxy/logs" "$work/audit"
  cat >"$work/nginx-up/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx-up/nginx.pid;
error_log $work/nginx-up/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $work/nginx-up/body;
  server {
    listen 127.0.0.1:$UP_PORT;
    location = /jwks.json { default_type application/json; alias $fx/jwks.json; }
    location = $db_path/catalog/big { default_type application/octet-stream; alias $work/big.bin; }
    location / {
      default_type application/json;
      return 200 '{"name":"projects/p/databases/(default)/documents/catalog/entity","fields":{}}';
    }
  }
}
EOF
  cat >"$work/nginx-proxy/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx-proxy/nginx.pid;
error_log $work/nginx-proxy/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $work/nginx-proxy/body;
  proxy_temp_path $work/nginx-proxy/proxy;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$PROXY_PORT;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  # RS256 signature, alg, iss, aud, exp and one path ACL, per request.
  cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend gate
  bind 127.0.0.1:$PROXY_PORT
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny status 401 unless { var(txn.iss) -m str $up }
  http-request deny status 401 unless { var(txn.aud) -m str firegate-bench }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$fx/rs256.pub.pem") -m int 1 }
  http-request deny status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request deny status 403 unless { path_beg /v1/projects/p/databases/(default)/documents }
  http-request del-header Authorization
  default_backend upstream
backend upstream
  server up 127.0.0.1:$UP_PORT
EOF
  cat >"$work/firegate.yaml" <<EOF
server:
  listen: 127.0.0.1:$PROXY_PORT
  admin_listen: 127.0.0.1:$ADMIN_PORT
  plain_http: true
  worker_threads: 1   # the one core it is pinned to
authn:
  issuers:
    - name: bench
      issuer: $up
      discovery: false
      jwks_uri: $up/jwks.json
      audiences: [firegate-bench]
policy:
  dir: $fx/policies
  watch: false
upstream:
  url: $up
  databases: ["projects/p/databases/(default)"]
  credentials: {source: emulator}
audit:
  sink: file
  path: $work/audit/audit.log
EOF
}

# The lua for wrk: METHOD PATH BODY_FILE|- TOKENS_FILE [STOP_AFTER_ONE_PASS]
write_lua() {
  cat >"$work/mix.lua" <<'EOF'
local tokens, body, method, path = {}, nil, "GET", "/"
local i, once, stopped = 0, false, false
function init(args)
  method, path = args[1], args[2]
  if args[3] ~= "-" then
    local f = assert(io.open(args[3], "rb")); body = f:read("*a"); f:close()
  end
  for line in io.lines(args[4]) do tokens[#tokens + 1] = line end
  once = args[5] == "once"
end
function request()
  i = i + 1
  local headers = {["Authorization"] = "Bearer " .. tokens[(i - 1) % #tokens + 1]}
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, path, headers, body)
end
function response()
  -- One pass only: every token a first sight (the margin covers requests in flight).
  if once and not stopped and i >= #tokens - 64 then stopped = true; wrk.thread:stop() end
end
EOF
}

# Sum of utime + stime, in clock ticks, of a process and its children.
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# Largest VmHWM (peak RSS, KiB) among a process and its children.
peak_rss_kib() {
  local best=0 pid v
  for pid in "$1" $(pgrep -P "$1" || true); do
    v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$best" ] && best=$v
  done
  echo "$best"
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

wait_port() {
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on port $1"; return 1
}

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_upstream() {
  taskset -c "$LOAD_CPU" nginx -p "$work/nginx-up" -c "$work/nginx-up/nginx.conf" -g 'daemon off;' &
  upstream_pid=$!
  pids+=("$upstream_pid")
  wait_port "$UP_PORT"
}

# Start one proxy configuration pinned to PROXY_CPU; sets proxy_pid.
start_proxy() {
  case $1 in
    direct) proxy_pid=; return ;;
    nginx) taskset -c "$PROXY_CPU" ${PROFILE_CMD:-} nginx -p "$work/nginx-proxy" -c "$work/nginx-proxy/nginx.conf" -g 'daemon off;' & ;;
    haproxy) taskset -c "$PROXY_CPU" haproxy -db -f "$work/haproxy.cfg" & ;;
    hyper) taskset -c "$PROXY_CPU" ${PROFILE_CMD:-} "$root/target/release/examples/hyper_floor" \
      "127.0.0.1:$PROXY_PORT" "$up" & ;;
    firegate | base)
      local bin=$firegate
      [ "$1" = base ] && bin=${BASE_FIREGATE:?BASE_FIREGATE names the binary to compare with}
      rm -rf "$work/audit" && mkdir -p "$work/audit"
      local level=${RUST_LOG:-warn}
      [ "$1" = base ] && level=${BASE_RUST_LOG:-$level}
      RUST_LOG=$level taskset -c "$PROXY_CPU" ${PROFILE_CMD:-} "$bin" serve --config "$work/firegate.yaml" 2>>"$work/firegate.log" & ;;
  esac
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_port "$PROXY_PORT"
  if [ "$1" = firegate ] || [ "$1" = base ]; then
    local i
    for i in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  # Warm: connections, the verified-token cache, the decision cache.
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$proxy$get_path" || {
    log "$1 did not answer a warm-up GET"; return 1; }
}

stop_proxy() {
  [ -n "${proxy_pid:-}" ] || return 0
  kill "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
  proxy_pid=
}

# wrk one mix: prints "requests seconds non2xx".
wrk_mix() { # URL METHOD PATH BODY TOKENS [once]
  local out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WRK_DURATION:-$DURATION}s" \
    -s "$work/mix.lua" "$1" -- "$2" "$3" "$4" "$5" "${6:-}")
  echo "$out" >>"$work/wrk.log"
  awk '/requests in/ {r=$1; s=$4; sub(/,$/, "", s); if (s ~ /ms$/) {sub(/ms$/, "", s); s /= 1000} \
    else if (s ~ /m$/) {sub(/m$/, "", s); s *= 60} else sub(/s$/, "", s)} \
    /Non-2xx/ {n=$NF} END {print r, s, n+0}' <<<"$out"
}

# One row of results: config mix run req/s cpu_per_10k peak_rss_kib p50_ms p99_ms
measure() { # CONFIG MIX RUN METHOD PATH BODY TOKENS [once]
  local config=$1 mix=$2 run=$3 base=$proxy before after result requests seconds bad cpu rss
  [ "$config" = direct ] && base=$up
  before=$( [ -n "${proxy_pid:-}" ] && cpu_ticks "$proxy_pid" || echo 0)
  result=$(wrk_mix "$base" "$4" "$5" "$6" "$7" "${8:-}")
  after=$( [ -n "${proxy_pid:-}" ] && cpu_ticks "$proxy_pid" || echo 0)
  read -r requests seconds bad <<<"$result"
  [ "$bad" = 0 ] || log "$config $mix: $bad answers were not 2xx"
  # A first-sight run that used up its tokens stopped early: its req/s is low.
  [ "${8:-}" != once ] || [ "$requests" -lt "$(($(wc -l <"$7") - 64))" ] ||
    log "$config $mix: ran out of fresh tokens (raise COLD); req/s understated"
  cpu=$(awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.3f", (n > 0 ? t / hz / n * 10000 : 0)}')
  rss=$( [ -n "${proxy_pid:-}" ] && peak_rss_kib "$proxy_pid" || echo 0)
  printf '%s\t%s\t%s\t%.0f\t%s\t%s\n' "$config" "$mix" "$run" \
    "$(awk -v n="$requests" -v s="$seconds" 'BEGIN {print n / s}')" "$cpu" "$rss" >>"$work/results.tsv"
  log "$config $mix run $run: $requests requests in ${seconds}s, $cpu CPU s/10k"
}

latency() { # CONFIG RUN
  local base=$proxy
  [ "$1" = direct ] && base=$up
  taskset -c "$LOAD_CPU" oha --no-tui --output-format json -z "${DURATION}s" -q "$RATE" -c 16 \
    -H "Authorization: Bearer $token" "$base$get_path" >"$work/oha.json"
  python3 - "$work/oha.json" "$1" "$2" >>"$work/latency.tsv" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
ok = d.get("statusCodeDistribution", {})
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{p['p50'] * 1000:.3f}\t{p['p99'] * 1000:.3f}\t{json.dumps(ok)}")
EOF
}

compare() {
  : >"$work/results.tsv"
  : >"$work/latency.tsv"
  : >"$work/wrk.log"
  local run config
  for run in $(seq 1 "$RUNS"); do
    for config in direct nginx hyper haproxy firegate; do
      start_proxy "$config"
      measure "$config" get "$run" GET "$get_path" - "$fx/tokens-hit.txt.one"
      measure "$config" get-1000-tokens "$run" GET "$get_path" - "$fx/tokens-hit.txt"
      measure "$config" commit-50 "$run" POST "$commit_path" "$fx/commit.json" "$fx/tokens-hit.txt"
      measure "$config" run-query "$run" POST "$query_path" "$fx/runquery.json" "$fx/tokens-hit.txt"
      if [ "$config" = firegate ]; then
        # First sight: every request a token never seen (a fresh process, so
        # no key or decision is cached beyond the warm-up's).
        for alg in rs256 es256; do
          stop_proxy; start_proxy firegate
          WRK_DURATION=$COLD_DURATION measure firegate "cold-$alg" "$run" GET "$get_path" - \
            "$fx/tokens-cold-$alg.txt" once
        done
      fi
      latency "$config" "$run"
      stop_proxy
    done
  done
  python3 "$root/benches/compare_report.py" "$work/results.tsv" "$work/latency.tsv" | tee "$work/report.md"
}

quick() {
  : >"$work/results.tsv"
  local run config
  for run in $(seq 1 "$RUNS"); do
    for config in ${QUICK_CONFIGS:-nginx hyper firegate}; do
      start_proxy "$config"
      case ${QUICK_MIX:-get}:$config in
        # First sight: a fresh process, every request a token never seen.
        cold-rs256:firegate | cold-rs256:base | cold-es256:firegate | cold-es256:base)
          WRK_DURATION=$COLD_DURATION measure "$config" get "$run" GET "$get_path" - \
            "$fx/tokens-$QUICK_MIX.txt" once ;;
        commit:*) measure "$config" commit-50 "$run" POST "$commit_path" "$fx/commit.json" "$fx/tokens-hit.txt" ;;
        run-query:*) measure "$config" run-query "$run" POST "$query_path" "$fx/runquery.json" "$fx/tokens-hit.txt" ;;
        *) measure "$config" get "$run" GET "$get_path" - "$fx/tokens-hit.txt.one" ;;
      esac
      stop_proxy
    done
  done
  awk -F'\t' '{cpu[$1] = cpu[$1] " " $5} END {for (c in cpu) print c ":" cpu[c]}' "$work/results.tsv"
  awk -F'\t' '$1 == "nginx" {n[$3] = $5} $1 == "firegate" {f[$3] = $5} $1 == "hyper" {h[$3] = $5}
    $1 == "base" {b[$3] = $5}
    END {for (r in n) if (n[r] > 0) {
      printf "run %s: firegate %.2fx nginx", r, f[r] / n[r]
      if (r in h) printf ", hyper floor %.2fx nginx", h[r] / n[r]
      if (r in b) printf ", base %.2fx nginx", b[r] / n[r]
      printf "\n" }}' "$work/results.tsv"
}

rss() {
  # The idle connections alone (each request answered before the next
  # connection opens), in a proxy of their own.
  start_proxy firegate
  ONE_AT_A_TIME=1 python3 "$root/benches/idle_connections.py" 127.0.0.1 "$PROXY_PORT" "$get_path" \
    "$fx/tokens-hit.txt" 1000 "$proxy_pid" "$UP_PORT" >"$work/idle-one.txt"
  stop_proxy
  start_proxy firegate
  local base idle streamed before
  base=$(rss_kib "$proxy_pid")
  python3 "$root/benches/idle_connections.py" 127.0.0.1 "$PROXY_PORT" "$get_path" "$fx/tokens-hit.txt" 1000 \
    "$proxy_pid" "$UP_PORT" >"$work/idle.txt"
  idle=$(cat "$work/idle.txt")
  before=$(rss_kib "$proxy_pid")
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$proxy$db_path/catalog/big"
  streamed=$(peak_rss_kib "$proxy_pid")
  stop_proxy
  {
    echo "| measurement | RSS |"
    echo "|---|---|"
    echo "| firegate after warm-up | $((base / 1024)) MiB |"
    echo "| with 1,000 idle keep-alive connections, opened one at a time | $(cat "$work/idle-one.txt") |"
    echo "| with 1,000 idle keep-alive connections, their requests all in flight at once | $idle |"
    echo "| streaming a 1 GiB response: peak RSS growth | $(( (streamed - before) / 1024 )) MiB (peak $((streamed / 1024)) MiB) |"
  } | tee "$work/rss.md"
}

soak() {
  start_proxy firegate
  local t=0 samples="$work/soak.tsv"
  : >"$samples"
  taskset -c "$LOAD_CPU" oha --no-tui --output-format json -z "${SOAK}s" -q "$RATE" -c 16 \
    -H "Authorization: Bearer $token" "$proxy$get_path" >"$work/soak-oha.json" &
  local load=$!
  pids+=("$load")
  while kill -0 "$load" 2>/dev/null; do
    printf '%s\t%s\n' "$t" "$(rss_kib "$proxy_pid")" >>"$samples"
    sleep 10
    t=$((t + 10))
  done
  wait "$load" || true
  stop_proxy
  python3 - "$samples" "$work/soak-oha.json" <<'EOF' | tee "$work/soak.md"
import json, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
d = json.load(open(sys.argv[2]))
kib = [r[1] for r in rows]
print(f"soak {rows[-1][0]} s at {d['summary']['requestsPerSec']:.0f} req/s, "
      f"{sum(d['statusCodeDistribution'].values())} requests, "
      f"status {d['statusCodeDistribution']}")
print(f"RSS MiB: start {kib[0] / 1024:.1f}, after 60 s {kib[min(6, len(kib) - 1)] / 1024:.1f}, "
      f"end {kib[-1] / 1024:.1f}, max {max(kib) / 1024:.1f}")
EOF
}

profile() {
  local data=$work/perf.data config=${PROFILE_CONFIG:-firegate}
  PROFILE_CMD="perf record -e cpu-clock -F 1999 --call-graph dwarf,${PERF_STACK:-16384} -o $data --" \
    start_proxy "$config"
  # perf is the pinned process; the proxy is its child.
  case ${PROFILE_MIX:-get} in
    commit) measure "$config" commit-50 profile POST "$commit_path" "$fx/commit.json" "$fx/tokens-hit.txt" ;;
    run-query) measure "$config" run-query profile POST "$query_path" "$fx/runquery.json" "$fx/tokens-hit.txt" ;;
    *) measure "$config" get profile GET "$get_path" - "$fx/tokens-hit.txt.one" ;;
  esac
  stop_proxy
  sleep 1
  # `head` closes the pipe early: that is not a failure of the mode.
  perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40 | tee "$work/profile-self.txt" || true
  perf report -i "$data" --children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -60 >"$work/profile-children.txt" || true
  # Whole stacks as a flame graph; frames under 0.1 % of samples left out.
  perf script -i "$data" 2>/dev/null | inferno-collapse-perf --all >"$work/perf.folded"
  inferno-flamegraph --minwidth 0.1 --title "$config, ${PROFILE_MIX:-get}" \
    <"$work/perf.folded" >"$work/flamegraph.svg"
  log "flame graph: $work/flamegraph.svg"
}

# Calls per request of one proxy under strace, then user/system ticks per
# thread over the same number of requests without strace.
syscalls_of() { # CONFIG
  local n=${SYSCALL_REQUESTS:-20000} pid out=$work/strace-$1.txt t
  start_proxy "$1"
  pid=$proxy_pid
  # nginx serves from its worker, the master's child.
  [ "$1" = nginx ] && pid=$(pgrep -P "$proxy_pid" | head -n1)
  strace -f -c -p "$pid" -o "$out" &
  local tracer=$!
  sleep 1
  taskset -c "$LOAD_CPU" oha --no-tui -n "$n" -c "$CONNECTIONS" \
    -H "Authorization: Bearer $token" "$proxy$get_path" >/dev/null
  kill -INT "$tracer"; wait "$tracer" || true
  echo "## $1: syscalls per request ($n GETs)"
  awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
    e = ($5 ~ /^[0-9]+$/) ? $5 : 0; printf "%-16s %8.3f  (errors %s)\n", $NF, $4 / n, e }' "$out"
  for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done \
    >"$work/ticks-before"
  taskset -c "$LOAD_CPU" oha --no-tui -n "$n" -c "$CONNECTIONS" \
    -H "Authorization: Bearer $token" "$proxy$get_path" >/dev/null
  echo "## $1: µs per request by thread (user system), no strace"
  for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done \
    | paste -d' ' "$work/ticks-before" - | awk -v n="$n" -v hz="$(getconf CLK_TCK)" '{
      u = ($5 - $2) / hz / n * 1e6; s = ($6 - $3) / hz / n * 1e6
      if (u + s > 0) printf "%-16s %6.1f %6.1f\n", $1, u, s }'
  stop_proxy
}

syscalls() {
  command -v strace >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; }
  { for c in ${SYSCALL_CONFIGS:-nginx hyper firegate}; do syscalls_of "$c"; done; } | tee "$work/syscalls.md"
}

# A framed GetDocumentRequest (the call) and Document (the fixed answer),
# both just the document's name.
write_grpc_bodies() {
  mkdir -p "$work/grpc-root/google.firestore.v1.Firestore"
  python3 - "$work" <<'EOF2'
import sys
name = b"projects/p/databases/(default)/documents/catalog/entity"
msg = b"\x0a" + bytes([len(name)]) + name
framed = b"\x00" + len(msg).to_bytes(4, "big") + msg
open(f"{sys.argv[1]}/getdocument.bin", "wb").write(framed)
open(f"{sys.argv[1]}/grpc-root/google.firestore.v1.Firestore/GetDocument", "wb").write(framed)
EOF2
  mkdir -p "$work/nginx-grpc-up/logs" "$work/nginx-grpc/logs"
  # POST to a static file is 405; error_page turns it into the file, 200,
  # with `grpc-status: 0` as a trailer: a fixed gRPC answer.
  cat >"$work/nginx-grpc-up/nginx.conf" <<EOF2
worker_processes 1;
pid $work/nginx-grpc-up/nginx.pid;
error_log $work/nginx-grpc-up/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx-grpc-up/body;
  server {
    listen 127.0.0.1:$UP_GRPC_PORT http2;
    keepalive_requests 100000000;
    location / {
      root $work/grpc-root;
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      error_page 405 =200 \$uri;
    }
  }
}
EOF2
  cat >"$work/nginx-grpc/nginx.conf" <<EOF2
worker_processes 1;
pid $work/nginx-grpc/nginx.pid;
error_log $work/nginx-grpc/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx-grpc/body;
  upstream up { server 127.0.0.1:$UP_GRPC_PORT; keepalive 64; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:$PROXY_PORT http2;
    keepalive_requests 100000000;
    location / { grpc_pass grpc://up; }
  }
}
EOF2
  sed -e "s|url: $up|url: http://127.0.0.1:$UP_GRPC_PORT|" "$work/firegate.yaml" >"$work/firegate-grpc.yaml"
}

# h2load one proxy: prints "calls seconds cpu_s_per_10k".
grpc_run() { # PORT PID
  local before after out calls secs
  before=$(cpu_ticks "$2")
  out=$(taskset -c "$LOAD_CPU" h2load -n "$GRPC_CALLS" -c 8 -m 16 -d "$work/getdocument.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $token" \
    "http://127.0.0.1:$1$grpc_path")
  after=$(cpu_ticks "$2")
  echo "$out" >>"$work/h2load.log"
  calls=$(awk '/^requests:/ {print $8}' <<<"$out")
  secs=$(awk '/^finished in/ {s=$3; sub(/,$/, "", s); if (s ~ /ms$/) {sub(/ms$/, "", s); s /= 1000} else sub(/s$/, "", s); print s}' <<<"$out")
  awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$calls" -v s="$secs" \
    'BEGIN {printf "%d %.2f %.3f\n", n, s, (n > 0 ? t / hz / n * 10000 : 0)}'
}

# One gRPC call through the proxy on PORT: its grpc-status must be 0.
grpc_check() { # PORT WHAT
  local status
  # curl does not show trailers; nghttp (nghttp2-client, with h2load) does.
  status=$(nghttp -v -d "$work/getdocument.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "authorization: Bearer $token" "http://127.0.0.1:$1$grpc_path" 2>&1 |
    grep -a -o 'grpc-status: [0-9]*' | awk '{print $2}' | tail -n1)
  [ "$status" = 0 ] || { log "$2: grpc-status '$status', not 0"; return 1; }
}

grpc() {
  write_grpc_bodies
  taskset -c "$LOAD_CPU" nginx -p "$work/nginx-grpc-up" -c "$work/nginx-grpc-up/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  wait_port "$UP_GRPC_PORT"
  grpc_check "$UP_GRPC_PORT" "the upstream"
  : >"$work/grpc.tsv"
  : >"$work/h2load.log"
  local run pid
  for run in $(seq 1 "$RUNS"); do
    taskset -c "$PROXY_CPU" nginx -p "$work/nginx-grpc" -c "$work/nginx-grpc/nginx.conf" -g 'daemon off;' &
    pid=$!; pids+=("$pid")
    wait_port "$PROXY_PORT"; grpc_check "$PROXY_PORT" "nginx grpc_pass"
    printf 'nginx\t%s\t%s\n' "$run" "$(grpc_run "$PROXY_PORT" "$pid")" >>"$work/grpc.tsv"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$work/audit" && mkdir -p "$work/audit"
    RUST_LOG=${RUST_LOG:-warn} taskset -c "$PROXY_CPU" "$firegate" serve --config "$work/firegate-grpc.yaml" \
      2>>"$work/firegate.log" &
    pid=$!; pids+=("$pid")
    wait_port "$PROXY_PORT"; grpc_check "$PROXY_PORT" "firegate"
    printf 'firegate\t%s\t%s\n' "$run" "$(grpc_run "$PROXY_PORT" "$pid")" >>"$work/grpc.tsv"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  awk -F'\t' '{split($3, v, " "); cpu[$1, $2] = v[3]; rate[$1, $2] = v[1] / v[2]; runs[$2] = 1}
    END {
      print "| run | nginx grpc_pass CPU s/10k | firegate CPU s/10k | ratio | nginx calls/s | firegate calls/s |"
      print "|---|---|---|---|---|---|"
      for (r in runs) printf "| %s | %.3f | %.3f | %.2fx | %.0f | %.0f |\n", r, cpu["nginx", r], cpu["firegate", r],
        cpu["firegate", r] / cpu["nginx", r], rate["nginx", r], rate["firegate", r]
    }' "$work/grpc.tsv" | tee "$work/grpc.md"
}

# Many Listen streams through firegate to a stream-capped upstream.
listen() {
  mkdir -p "$work/nginx-capped/logs" "$work/listen-policies"
  cat >"$work/nginx-capped/nginx.conf" <<EOF2
worker_processes 1;
worker_rlimit_nofile 19000;
pid $work/nginx-capped/nginx.pid;
error_log $work/nginx-capped/logs/error.log warn;
events { worker_connections 32768; }
http {
  access_log off;
  client_body_temp_path $work/nginx-capped/body;
  upstream emulator { server 127.0.0.1:$EMULATOR_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$CAPPED_PORT http2;
    http2_max_concurrent_streams 100;
    # A quiet Listen sends nothing for long: no body or idle timeout.
    client_body_timeout 3600s;
    keepalive_timeout 3600s;
    grpc_read_timeout 3600s;
    grpc_send_timeout 3600s;
    location / { grpc_pass grpc://emulator; }
  }
}
EOF2
  cat >"$work/listen-policies/rules.yaml" <<EOF2
rules:
  - id: catalog
    match: /catalog/{rest=**}
    allow: [read]
    who: {authenticated: true}
EOF2
  cat >"$work/listen-deny.yaml" <<EOF2
rules:
  - id: elsewhere
    match: /elsewhere/{rest=**}
    allow: [read]
    who: {authenticated: true}
EOF2
  sed -e "s|url: $up|url: http://127.0.0.1:$CAPPED_PORT|" -e "s|dir: $fx/policies|dir: $work/listen-policies|" \
    "$work/firegate.yaml" >"$work/firegate-listen.yaml"
  ulimit -n "$(ulimit -Hn)" || true
  taskset -c "$LOAD_CPU" "$firegate" emulator --listen "127.0.0.1:$EMULATOR_PORT" 2>>"$work/emulator.log" &
  pids+=($!)
  taskset -c "$LOAD_CPU" nginx -p "$work/nginx-capped" -c "$work/nginx-capped/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  wait_port "$EMULATOR_PORT"; wait_port "$CAPPED_PORT"
  rm -rf "$work/audit" && mkdir -p "$work/audit"
  RUST_LOG=${RUST_LOG:-warn} taskset -c "$PROXY_CPU" "$firegate" serve --config "$work/firegate-listen.yaml" \
    2>>"$work/firegate.log" &
  local pid=$!
  pids+=("$pid")
  wait_port "$PROXY_PORT"
  sleep 1
  taskset -c "$LOAD_CPU" "$root/target/release/examples/listen_load" "http://127.0.0.1:$PROXY_PORT" "$fx/tokens-hit.txt" \
    "$LISTEN_STREAMS" "projects/p/databases/(default)/documents/catalog/entity" "$pid" \
    "$work/listen-deny.yaml" "$work/listen-policies/rules.yaml" | tee "$work/listen.json"
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^firegate_upstream_(connections|streams)' \
    | tee "$work/listen-metrics.txt" || true
}

main() {
  local mode=${1:-compare}
  install_tools
  build
  mkdir -p "$work"
  fixture
  head -n1 "$fx/tokens-hit.txt" >"$fx/tokens-hit.txt.one"
  write_lua
  start_upstream
  case $mode in
    compare | soak | syscalls | all) need_oha ;;
    profile) need_inferno ;;
  esac
  case $mode in
    compare) compare ;;
    rss) rss ;;
    soak) soak ;;
    profile) profile ;;
    syscalls) syscalls ;;
    quick) quick ;;
    grpc) grpc ;;
    listen) listen ;;
    all) compare; rss; soak ;;
    *) log "unknown mode $mode"; exit 2 ;;
  esac
}

main "$@"
