#!/usr/bin/env bash
# End-to-end loopback benchmark: `safechat upload` / `safechat download` against `safechat serve`,
# beside nginx (WebDAV PUT) taking a plain PUT and serving a plain GET of the same bytes with curl,
# plus the registry's write latency at many files. Release builds; everything on 127.0.0.1.
# Runs are interleaved (nginx PUT, nginx PUT + fsync, nginx GET, safechat upload, safechat download)
# so drift on a shared machine hits both sides; the gateway's CPU time per GiB is read from /proc.
#
#   perf/gateway-bench.sh [--size-mib 1024] [--runs 3] [--registry-files 100000] [--datasets random,mixed]
set -euo pipefail
cd "$(dirname "$0")/.."
size=1024 runs=3 registry=100000 datasets=random,mixed
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --registry-files) registry=$2; shift 2 ;;
    --datasets) datasets=$2; shift 2 ;;
    *) echo "usage: $0 [--size-mib N] [--runs N] [--registry-files N] [--datasets random,mixed]" >&2; exit 64 ;;
  esac
done
.ci/install-packages nginx curl time
swift build -c release --static-swift-stdlib >/dev/null
bin=$PWD/.build/release/safechat
work=$(mktemp -d /tmp/safechat-gwbench.XXXXXX)
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mapfile -t files < <(.build/release/safechat-bench --prepare-only --size-mib "$size" --data-dir perf/.data --datasets "$datasets")

# nginx: PUT into a DAV directory, GET from it.
mkdir -p "$work/www" "$work/nginx-tmp"
# nginx workers run as an unprivileged user: let them write the PUT bodies.
chmod 755 "$work"; chmod 777 "$work/www" "$work/nginx-tmp"
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx-tmp;
  client_max_body_size 0;
  sendfile on;
  server {
    listen 127.0.0.1:18090;
    root $work/www;
    location / { dav_methods PUT DELETE; create_full_put_path on; }
  }
}
NGINX
nginx -c "$work/nginx.conf"

# The gateway, on a fresh data directory, with the demo account.
"$bin" serve --demo --port 18091 --data-dir "$work/data" --max-file-size 64G 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/serve.log" && break; sleep 0.1; done
export XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/share
echo password123 | "$bin" login --server http://127.0.0.1:18091 --user user1 2>/dev/null
"$bin" keygen "$work/key" 2>/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f", b/1e6/s}'; }
timed() { /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>>"$work/cmd.log"; cat "$work/time"; }
ticks=$(getconf CLK_TCK)
# The gateway's user + system CPU seconds so far.
server_cpu() { awk -v t="$ticks" '{printf "%.3f", ($14 + $15) / t}' "/proc/$server_pid/stat"; }
# nginx's, summed over its master and workers: the same-run baseline for the gateway's.
nginx_cpu() { for p in $(pgrep -x nginx); do cat "/proc/$p/stat"; done | awk -v t="$ticks" '{s += $14 + $15} END {printf "%.3f", s / t}'; }
per_gib() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.3f", (b - a) / (n / 1073741824)}'; }

echo "gateway-bench: ${size} MiB per data set, median of $runs runs, $(nproc) cores, loopback"
for file in "${files[@]}"; do
  name=$(basename "$file")
  bytes=$(stat -c %s "$file")
  cat "$file" >/dev/null
  up=() down=() nput=() nputsync=() nget=() upcpu=() downcpu=() putcpu=() getcpu=() up_rss=0 down_rss=0
  for _ in $(seq 1 "$runs"); do
    n0=$(nginx_cpu)
    read -r t m < <(timed curl -sS -f -T "$file" "http://127.0.0.1:18090/$name"); nput+=("$t")
    n1=$(nginx_cpu); putcpu+=("$(per_gib "$n0" "$n1" "$bytes")")
    # The same PUT made durable as the gateway makes every acknowledged upload: fsync of the file.
    read -r t m < <(timed sh -c "curl -sS -f -T '$file' 'http://127.0.0.1:18090/$name' && sync '$work/www/$name'"); nputsync+=("$t")
    n2=$(nginx_cpu)
    read -r t m < <(timed curl -sS -f -o /dev/null "http://127.0.0.1:18090/$name"); nget+=("$t")
    n3=$(nginx_cpu); getcpu+=("$(per_gib "$n2" "$n3" "$bytes")")
    c0=$(server_cpu)
    read -r t m < <(/usr/bin/time -f "%e %M" -o "$work/time" "$bin" upload -q --key "$work/key" "$file" >"$work/id" 2>>"$work/cmd.log"; cat "$work/time")
    c1=$(server_cpu); upcpu+=("$(per_gib "$c0" "$c1" "$bytes")")
    up+=("$t"); [ "$m" -gt "$up_rss" ] && up_rss=$m
    id=$(cat "$work/id")
    read -r t m < <(timed "$bin" download -q --key "$work/key" "$id" -o /dev/null); down+=("$t")
    c2=$(server_cpu); downcpu+=("$(per_gib "$c1" "$c2" "$bytes")")
    [ "$m" -gt "$down_rss" ] && down_rss=$m
    "$bin" rm "$id"
  done
  server_rss=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
  u=$(printf '%s\n' "${up[@]}" | median); d=$(printf '%s\n' "${down[@]}" | median)
  p=$(printf '%s\n' "${nput[@]}" | median); g=$(printf '%s\n' "${nget[@]}" | median)
  ps=$(printf '%s\n' "${nputsync[@]}" | median)
  uc=$(printf '%s\n' "${upcpu[@]}" | median); dc=$(printf '%s\n' "${downcpu[@]}" | median)
  pc=$(printf '%s\n' "${putcpu[@]}" | median); gc=$(printf '%s\n' "${getcpu[@]}" | median)
  echo "== $name ($bytes bytes)"
  echo "  safechat upload    $(mbps "$bytes" "$u") MB/s   client peak RSS $((up_rss / 1024)) MiB"
  echo "  safechat download  $(mbps "$bytes" "$d") MB/s   client peak RSS $((down_rss / 1024)) MiB"
  echo "  nginx PUT (curl)   $(mbps "$bytes" "$p") MB/s"
  echo "  nginx PUT + fsync  $(mbps "$bytes" "$ps") MB/s"
  echo "  nginx GET (curl)   $(mbps "$bytes" "$g") MB/s"
  echo "  ratios: upload/PUT $(awk -v a="$p" -v b="$u" 'BEGIN {printf "%.2f", a/b}')  upload/(PUT+fsync) $(awk -v a="$ps" -v b="$u" 'BEGIN {printf "%.2f", a/b}')  download/GET $(awk -v a="$g" -v b="$d" 'BEGIN {printf "%.2f", a/b}')"
  echo "  server CPU-seconds per GiB: gateway upload $uc (nginx PUT $pc)  gateway download $dc (nginx GET $gc)"
  echo "  server peak RSS so far $((server_rss / 1024)) MiB"
done
echo
.build/release/safechat-bench --data-dir "$work" --registry-files "$registry"
