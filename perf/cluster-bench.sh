#!/usr/bin/env bash
# One gateway against two behind HAProxy, on one PostgreSQL and one SeaweedFS bucket (the ones
# .ci/services starts, on loopback): CLIENTS concurrent `safechat upload`s of SIZE MiB each through
# the balancer, then as many downloads (to /dev/null), timed as a whole; aggregate MB/s for each
# configuration, in interleaved runs (the order alternates), medians and the 2/1 ratio.
# Then the file registry at scale (safechat-registry-bench): write latency p50/p99, one owner's
# listing and the whole registry's read, on PostgreSQL at 100 000 and 1 000 000 files and on the
# embedded JSON registry at 100 000.
# Then chat (safechat-chat-bench): 1000 connections (10 users x 100 sessions) at RATE msg/s,
# every connection on gateway A, then the members of each session spread over A and B (a
# delivery then crosses PostgreSQL's LISTEN/NOTIFY): latency p50/p99, medians of RUNS runs each.
# Release build. Everything shares this machine's cores: the gateways, HAProxy, PostgreSQL,
# SeaweedFS and the clients.
#
#   perf/cluster-bench.sh [--size-mib 1024] [--clients 4] [--runs 3] [--rate 1000] [--seconds 20]
#                         [--registry-only | --throughput-only | --chat-only]
set -euo pipefail
cd "$(dirname "$0")/.."
size=1024 clients=4 runs=3 throughput=1 registry=1 chat=1 rate=1000 seconds=20
while [ $# -gt 0 ]; do
  case "$1" in
    --registry-only) throughput=0; chat=0; shift ;;
    --throughput-only) registry=0; chat=0; shift ;;
    --chat-only) registry=0; throughput=0; shift ;;
    --rate) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --size-mib) size=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--size-mib N] [--clients N] [--runs N] [--rate MSG/S] [--seconds S] [--registry-only | --throughput-only | --chat-only]" >&2; exit 64 ;;
  esac
done
.ci/install-packages haproxy curl
bash .ci/services start >/dev/null
set -a; . .build/test-services/env; set +a
export PGPASSWORD=$SAFECHAT_TEST_PGPASSWORD
export AWS_ACCESS_KEY_ID=$SAFECHAT_TEST_S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$SAFECHAT_TEST_S3_SECRET_ACCESS_KEY AWS_REGION=us-east-1
swift build -c release --static-swift-stdlib >/dev/null
bin=$PWD/.build/release/safechat
work=$(mktemp -d /tmp/safechat-clusterbench.XXXXXX)
name=bench_$(basename "$work" | tr -c 'a-zA-Z0-9\n' _ | tr A-Z a-z)
db=${SAFECHAT_TEST_DATABASE_URL%/*}/$name
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  psql -q "$SAFECHAT_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "DROP DATABASE IF EXISTS ${name}_r WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
postgres_ticks() { # user + system clock ticks of every postgres process
  local total=0 pid
  for pid in $(pgrep -x postgres); do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo $total
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
psql -q "$SAFECHAT_TEST_DATABASE_URL" -c "CREATE DATABASE $name"
"$bin" migrate --database "$db" >/dev/null

if [ $registry -eq 1 ]; then
  echo "The file registry at scale (safechat-registry-bench):"
  for n in 100000 1000000; do
    psql -q "$SAFECHAT_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS ${name}_r" -c "CREATE DATABASE ${name}_r"
    .build/release/safechat-registry-bench postgres --database "${db}_r" --files $n
  done
  psql -q "$SAFECHAT_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS ${name}_r"
  .build/release/safechat-registry-bench json --dir "$work/json-registry" --files 100000
  rm -rf "$work/json-registry"
  echo
fi
[ $throughput -eq 1 ] || [ $chat -eq 1 ] || exit 0

(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/signing.key")

for port in 18181 18182; do
  "$bin" serve --demo --port $port --data-dir "$work/gw$port" --signing-key "$work/signing.key" --database "$db" \
    --blob-store "s3://$SAFECHAT_TEST_S3_BUCKET/$name" --s3-endpoint "$SAFECHAT_TEST_S3_ENDPOINT" 2>"$work/gw$port.log" &
  pids+=($!)
done
balancer() { # port servers…
  local port=$1; shift
  { printf 'defaults\n  mode http\n  timeout connect 2s\n  timeout client 10m\n  timeout server 10m\n'
    printf 'frontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  balance roundrobin\n' "$port"
    for server in "$@"; do printf '  server s%s 127.0.0.1:%s\n' "$server" "$server"; done; } > "$work/haproxy-$port.cfg"
  haproxy -f "$work/haproxy-$port.cfg" -db 2>"$work/haproxy-$port.log" &
  pids+=($!)
}
for port in 18181 18182; do
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

if [ $chat -eq 1 ]; then
  for n in $(seq 2 10); do printf 'password123\npassword123\n' | "$bin" user add "user$n" --database "$db" >/dev/null 2>&1; done
  echo "Chat, 1000 connections at $rate msg/s for $seconds s (safechat-chat-bench), one gateway and two, interleaved:"
  : > "$work/chat-one"; : > "$work/chat-two"
  for run in $(seq 1 "$runs"); do
    if [ $((run % 2)) -eq 1 ]; then order="one two"; else order="two one"; fi
    for config in $order; do
      servers=http://127.0.0.1:18181; [ $config = two ] && servers=$servers,http://127.0.0.1:18182
      # CPU of the whole run (set-up included): PostgreSQL's processes and the load generator's.
      db_before=$(postgres_ticks); started=$(date +%s.%N)
      { TIMEFORMAT='%U %S'; time .build/release/safechat-chat-bench --servers "$servers" --gateway-pid "${pids[0]}" --rate "$rate" \
          --seconds "$seconds" --runs 1 --work-dir "$work/chat" >"$work/chat.out" 2>"$work/chat.log"; } 2>"$work/chat.time" || true
      elapsed=$(awk -v a="$(date +%s.%N)" -v b="$started" 'BEGIN {print a - b}'); db_after=$(postgres_ticks)
      line=$(grep '^run 1 chat alone' "$work/chat.out" || true)
      [ -n "$line" ] || { echo "cluster-bench: the chat bench failed:" >&2; tail -3 "$work/chat.log" >&2; exit 1; }
      cpu=$(awk -v e="$elapsed" -v d=$((db_after - db_before)) -v t="$(getconf CLK_TCK)" '{printf "PostgreSQL %.2f cores, load generator %.2f cores", d / t / e, ($1 + $2) / e}' "$work/chat.time")
      echo "run $run, $config gateway(s): ${line#run 1 chat alone: }; $cpu"
      echo "$line" | sed -E 's/.*p50 ([0-9.na]+) ms p99 ([0-9.na]+) ms.*/\1 \2/' >> "$work/chat-$config"
    done
  done
  for config in one two; do
    p50=$(cut -d' ' -f1 "$work/chat-$config" | median); p99=$(cut -d' ' -f2 "$work/chat-$config" | median)
    echo "$config gateway(s): median p50 $p50 ms, p99 $p99 ms (target p99 < 20 ms)"
  done
  echo
fi
[ $throughput -eq 1 ] || exit 0
head -c $((size << 20)) /dev/urandom > "$work/data"

balancer 18191 18181          # one gateway
balancer 18192 18181 18182    # two gateways
for port in 18191 18192; do
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
for c in $(seq 1 "$clients"); do
  mkdir -p "$work/c$c"
  XDG_CONFIG_HOME=$work/c$c/config XDG_DATA_HOME=$work/c$c/data "$bin" keygen "$work/c$c/key" 2>/dev/null
done

# One round through the balancer on $1: every client uploads, then every client downloads.
round() {
  local port=$1 start end
  for c in $(seq 1 "$clients"); do
    echo password123 | XDG_CONFIG_HOME=$work/c$c/config XDG_DATA_HOME=$work/c$c/data "$bin" login --server "http://127.0.0.1:$port" --user user1 2>/dev/null
  done
  start=$(date +%s.%N)
  for c in $(seq 1 "$clients"); do
    XDG_CONFIG_HOME=$work/c$c/config XDG_DATA_HOME=$work/c$c/data "$bin" upload -q --key "$work/c$c/key" "$work/data" > "$work/c$c/id" &
  done
  wait_clients
  end=$(date +%s.%N); up=$(echo "$start $end" | awk -v b=$((clients * size)) '{printf "%.0f", b * 1.048576 / ($2 - $1)}')
  start=$(date +%s.%N)
  for c in $(seq 1 "$clients"); do
    XDG_CONFIG_HOME=$work/c$c/config XDG_DATA_HOME=$work/c$c/data "$bin" download -q --key "$work/c$c/key" "$(cat "$work/c$c/id")" --output /dev/null &
  done
  wait_clients
  end=$(date +%s.%N); down=$(echo "$start $end" | awk -v b=$((clients * size)) '{printf "%.0f", b * 1.048576 / ($2 - $1)}')
  for c in $(seq 1 "$clients"); do XDG_CONFIG_HOME=$work/c$c/config "$bin" rm "$(cat "$work/c$c/id")" >/dev/null 2>&1 || true; done
  echo "$up $down"
}
wait_clients() { # every client job, failing the bench if one failed
  local failed=0
  for job in $(jobs -p); do
    case " ${pids[*]} " in *" $job "*) continue ;; esac
    wait "$job" || failed=1
  done
  [ $failed -eq 0 ] || { echo "cluster-bench: a client failed" >&2; exit 1; }
}

: > "$work/one"; : > "$work/two"
for run in $(seq 1 "$runs"); do
  if [ $((run % 2)) -eq 1 ]; then order="one two"; else order="two one"; fi
  for config in $order; do
    port=$([ $config = one ] && echo 18191 || echo 18192)
    result=$(round $port)
    [ -n "$result" ] || { echo "cluster-bench: a round failed; logs in $work" >&2; exit 1; }
    echo "$result" >> "$work/$config"
    echo "run $run, $config gateway(s): up $(echo $result | cut -d' ' -f1) MB/s, down $(echo $result | cut -d' ' -f2) MB/s" >&2
  done
done
up1=$(cut -d' ' -f1 "$work/one" | median); down1=$(cut -d' ' -f2 "$work/one" | median)
up2=$(cut -d' ' -f1 "$work/two" | median); down2=$(cut -d' ' -f2 "$work/two" | median)
echo
echo "$clients clients x $size MiB through HAProxy, medians of $runs interleaved runs (aggregate MB/s)"
printf '%-22s %10s %10s\n' "" upload download
printf '%-22s %10s %10s\n' "1 gateway" "$up1" "$down1"
printf '%-22s %10s %10s\n' "2 gateways" "$up2" "$down2"
printf '%-22s %10s %10s\n' "2 / 1" "$(awk -v a=$up2 -v b=$up1 'BEGIN{printf "%.2f", a/b}')" "$(awk -v a=$down2 -v b=$down1 'BEGIN{printf "%.2f", a/b}')"
