#!/usr/bin/env bash
# Downloads from the local store beside nginx serving the very same file (the gateway's own blob,
# under its data directory), both to /dev/null with curl, from a cold page cache (dropped before
# every GET, on both sides) and from a warm one. Release build, loopback, runs interleaved,
# medians and ratios.
#
#   perf/download-bench.sh [--size-mib 1024] [--runs 5]
#
# Dropping the page cache needs root (/proc/sys/vm/drop_caches); without it only warm figures
# are reported.
set -euo pipefail
cd "$(dirname "$0")/.."
size=1024 runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--size-mib N] [--runs N]" >&2; exit 64 ;;
  esac
done
.ci/install-packages nginx curl
swift build -c release --static-swift-stdlib >/dev/null
bin=$PWD/.build/release/safechat
work=$(mktemp -d /tmp/safechat-dlbench.XXXXXX)
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mapfile -t files < <(.build/release/safechat-bench --prepare-only --size-mib "$size" --data-dir perf/.data --datasets random)
"$bin" keygen "$work/key" 2>/dev/null
"$bin" seal -q --key "$work/key" "${files[0]}" "$work/sealed"
bytes=$(stat -c %s "$work/sealed")

"$bin" serve --demo --port 18095 --data-dir "$work/data" 2>"$work/serve.log" & server_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/serve.log" && break; sleep 0.1; done
token=$(curl -s -d '{"username":"user1","password":"password123"}' http://127.0.0.1:18095/login | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
id=$(curl -s -H "Authorization: Bearer $token" -X POST -T "$work/sealed" http://127.0.0.1:18095/upload | python3 -c 'import json,sys; print(json.load(sys.stdin)["file_id"])')
rm -f "$work/sealed"

# nginx serves the gateway's blob directory: the same bytes, the same file system.
chmod 755 "$work" "$work/data" "$work/data/data" "$work/data/data/blobs"; chmod 644 "$work/data/data/blobs/$id"
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:18096; root $work/data/data/blobs; }
}
NGINX
nginx -c "$work/nginx.conf"

cold=0
if [ -w /proc/sys/vm/drop_caches ]; then cold=1; fi
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
get() { curl -sS -f -o /dev/null -w '%{time_total}\n' "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
gw=(-H "Authorization: Bearer $token" "http://127.0.0.1:18095/download/$id")
ng=("http://127.0.0.1:18096/$id")
: > "$work/runs"
for run in $(seq 1 "$runs"); do
  if [ "$cold" = 1 ]; then
    drop; echo "gateway cold $(get "${gw[@]}")" >> "$work/runs"
    drop; echo "nginx cold $(get "${ng[@]}")" >> "$work/runs"
  fi
  get "${gw[@]}" >/dev/null; get "${ng[@]}" >/dev/null  # warm both
  echo "gateway warm $(get "${gw[@]}")" >> "$work/runs"
  echo "nginx warm $(get "${ng[@]}")" >> "$work/runs"
done

echo "download-bench: $bytes bytes from the local store, median of $runs interleaved runs, $(nproc) cores, loopback"
for cache in cold warm; do
  [ "$cache" = cold ] && [ "$cold" = 0 ] && { echo "  cold: not measured (dropping the page cache needs root)"; continue; }
  g=$(awk -v c="$cache" '$1 == "gateway" && $2 == c {print $3}' "$work/runs" | median)
  n=$(awk -v c="$cache" '$1 == "nginx" && $2 == c {print $3}' "$work/runs" | median)
  awk -v c="$cache" -v g="$g" -v n="$n" -v b="$bytes" 'BEGIN {
    printf "  %-4s  gateway %.2f s (%.0f MB/s)   nginx %.2f s (%.0f MB/s)   gateway/nginx speed %.2f\n", c, g, b / 1e6 / g, n, b / 1e6 / n, n / g }'
done
