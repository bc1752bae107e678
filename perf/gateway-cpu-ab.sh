#!/usr/bin/env bash
# A/B of two safechat builds through their own gateways: upload and download rate and the gateway's
# CPU-seconds per GiB (user + system, from /proc), runs interleaved so machine drift hits both.
#
#   perf/gateway-cpu-ab.sh OLD_SAFECHAT NEW_SAFECHAT [FILE] [RUNS]
#
# e.g. a release build of an earlier commit in a git worktree against this one, on the 1 GiB random
# file perf/seal-bench.sh prepares (perf/.data/random-1024MiB.bin).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_SAFECHAT NEW_SAFECHAT [FILE] [RUNS]" >&2; exit 64; }
old_bin=$1 new_bin=$2 f=${3:-perf/.data/random-1024MiB.bin} runs=${4:-5}
bytes=$(stat -c %s "$f")
W=$(mktemp -d /tmp/safechat-ab.XXXXXX)
trap 'kill $(cat $W/old.pid $W/new.pid 2>/dev/null) 2>/dev/null || true; rm -rf $W' EXIT
ticks=$(getconf CLK_TCK)
start() { # name bin port
  "$2" serve --demo --port $3 --data-dir $W/$1-data 2>$W/$1.log & echo $! > $W/$1.pid
  for _ in $(seq 1 100); do grep -q listening $W/$1.log && break; sleep 0.1; done
  XDG_CONFIG_HOME=$W/$1-config bash -c "echo password123 | '$2' login --server http://127.0.0.1:$3 --user user1 2>/dev/null; '$2' keygen $W/$1.key 2>/dev/null"
}
cpu() { awk -v t=$ticks '{printf "%.3f", ($14+$15)/t}' /proc/$(cat $W/$1.pid)/stat; }
start old "$old_bin" 18201
start new "$new_bin" 18202
cat "$f" >/dev/null
for run in $(seq 1 "$runs"); do
  for side in old new; do
    bin=$([ $side = old ] && echo "$old_bin" || echo "$new_bin")
    export XDG_CONFIG_HOME=$W/$side-config
    c0=$(cpu $side); t0=$(date +%s.%N)
    id=$("$bin" upload -q --key $W/$side.key "$f")
    c1=$(cpu $side); t1=$(date +%s.%N)
    "$bin" download -q --key $W/$side.key "$id" -o /dev/null
    c2=$(cpu $side); t2=$(date +%s.%N)
    "$bin" rm "$id"
    awk -v s=$side -v r=$run -v a=$c0 -v b=$c1 -v c=$c2 -v t0=$t0 -v t1=$t1 -v t2=$t2 -v n=$bytes 'BEGIN {g=n/1073741824; printf "%s run %d: upload %.0f MB/s, server %.2f CPU-s/GiB; download %.0f MB/s, server %.2f CPU-s/GiB\n", s, r, n/1e6/(t1-t0), (b-a)/g, n/1e6/(t2-t1), (c-b)/g}'
  done
done
