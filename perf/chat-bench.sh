#!/usr/bin/env bash
# Chat under load on loopback: 1000 WebSocket connections (10 users × 100 sessions of 10 members)
# from a load generator in a second process (safechat-chat-bench), against a release `safechat
# serve`; alone, then while a 1 GiB `safechat upload` runs beside it (the upload also timed alone,
# runs interleaved). Reports latency p50/p99, messages and deliveries per second, gateway RSS and CPU.
#
#   perf/chat-bench.sh [--rate 5000] [--seconds 20] [--runs 3] [--size-mib 1024] [--no-upload]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=5000 seconds=20 runs=3 size=1024 upload=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --size-mib) size=$2; shift 2 ;;
    --no-upload) upload=0; shift ;;
    *) echo "usage: $0 [--rate MSG/S] [--seconds S] [--runs N] [--size-mib N] [--no-upload]" >&2; exit 64 ;;
  esac
done
swift build -c release --static-swift-stdlib >/dev/null
bin=${SAFECHAT_BIN:-$PWD/.build/release/safechat}  # SAFECHAT_BIN: another build to measure
work=$(mktemp -d /tmp/safechat-chatbench.XXXXXX)
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# user1 (the demo account) to user10 chat; "uploader" sends the 1 GiB file beside them.
for n in $(seq 2 10) uploader; do
  name=user$n; [ "$n" = uploader ] && name=uploader
  echo password123 | "$bin" user add "$name" --data-dir "$work/data" 2>/dev/null
done
port=18402
"$bin" serve --demo --port $port --data-dir "$work/data" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/serve.log" && break; sleep 0.1; done

beside=()
if [ "$upload" = 1 ]; then
  file=$(.build/release/safechat-bench --prepare-only --size-mib "$size" --data-dir perf/.data --datasets random)
  export XDG_CONFIG_HOME=$work/uploader/config XDG_DATA_HOME=$work/uploader/share
  echo password123 | "$bin" login --server http://127.0.0.1:$port --user uploader 2>/dev/null
  "$bin" keygen "$work/key" 2>/dev/null
  cat "$file" >/dev/null
  beside=(--beside "'$bin' upload -q --key '$work/key' '$file' > '$work/id'" --beside-bytes "$(stat -c %s "$file")"
          --cleanup "'$bin' rm \$(cat '$work/id')")
fi
${BENCH_WRAP:-} .build/release/safechat-chat-bench --server http://127.0.0.1:$port --gateway-pid $server_pid --rate "$rate" --seconds "$seconds" \
  --runs "$runs" --work-dir "$work/clients" "${beside[@]}"
