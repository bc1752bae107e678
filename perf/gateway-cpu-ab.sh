#!/usr/bin/env bash
# A/B of safechat builds (or of one build's gateway options), each through its own gateway: upload
# and download rate and the gateway's CPU-seconds per GiB (user + system, from /proc). Every round
# runs each side once, in a shuffled order, so machine drift hits all sides alike; medians at the end.
#
#   perf/gateway-cpu-ab.sh [--runs N] [--file F] SIDE...
#
# A SIDE is a safechat binary, optionally with `serve` options after a colon:
#   perf/gateway-cpu-ab.sh --runs 9 /tmp/old/safechat .build/release/safechat .build/release/safechat:--no-direct-io
# F defaults to the 1 GiB random file perf/seal-bench.sh prepares (perf/.data/random-1024MiB.bin).
set -euo pipefail
runs=5 f=perf/.data/random-1024MiB.bin
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --file) f=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--runs N] [--file F] BINARY[:SERVE-OPTIONS]..." >&2; exit 64; }
sides=("$@")
bytes=$(stat -c %s "$f")
W=$(mktemp -d /tmp/safechat-ab.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$W"' EXIT
ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{printf "%.3f", ($14+$15)/t}' "/proc/$1/stat"; }
bin_of() { echo "${sides[$1]%%:*}"; }
for i in "${!sides[@]}"; do
  bin=$(bin_of "$i") options=""
  [[ ${sides[$i]} == *:* ]] && options=${sides[$i]#*:}
  # shellcheck disable=SC2086 # options are words
  "$bin" serve --demo --port $((18200 + i)) --data-dir "$W/data$i" $options 2>"$W/serve$i.log" & pids+=($!)
  for _ in $(seq 1 100); do grep -q listening "$W/serve$i.log" && break; sleep 0.1; done
  XDG_CONFIG_HOME=$W/config$i XDG_DATA_HOME=$W/share$i bash -c \
    "echo password123 | '$bin' login --server http://127.0.0.1:$((18200 + i)) --user user1 >/dev/null 2>&1 && '$bin' keygen '$W/key$i' 2>/dev/null"
done
cat "$f" >/dev/null
for run in $(seq 1 "$runs"); do
  for i in $(shuf -e "${!sides[@]}"); do
    bin=$(bin_of "$i")
    export XDG_CONFIG_HOME=$W/config$i XDG_DATA_HOME=$W/share$i
    c0=$(cpu "${pids[$i]}"); t0=$(date +%s.%N)
    id=$("$bin" upload -q --key "$W/key$i" "$f")
    c1=$(cpu "${pids[$i]}"); t1=$(date +%s.%N)
    "$bin" download -q --key "$W/key$i" "$id" -o /dev/null
    c2=$(cpu "${pids[$i]}"); t2=$(date +%s.%N)
    "$bin" rm "$id"
    awk -v s="$i" -v r="$run" -v a="$c0" -v b="$c1" -v c="$c2" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v n="$bytes" 'BEGIN {
      g = n / 1073741824
      printf "%s %d %.0f %.2f %.0f %.2f\n", s, r, n/1e6/(t1-t0), (b-a)/g, n/1e6/(t2-t1), (c-b)/g }' >>"$W/results"
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "gateway-cpu-ab: $(basename "$f"), medians of $runs runs (shuffled order each round)"
for i in "${!sides[@]}"; do
  col() { awk -v s="$i" -v c="$1" '$1 == s {print $c}' "$W/results" | median; }
  echo "  ${sides[$i]}: upload $(col 3) MB/s, gateway $(col 4) CPU-s/GiB; download $(col 5) MB/s, gateway $(col 6) CPU-s/GiB"
done
