#!/usr/bin/env bash
# A file sent to a session against a personal one: `safechat upload --session` / `download` (key from
# the session's verified log) beside `upload --key` / `download --key`, the same file, runs
# interleaved, one release gateway on 127.0.0.1.
#
#   perf/session-bench.sh [FILE] [RUNS]      (FILE defaults to the 1 GiB random set of perf/seal-bench.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --product safechat >/dev/null
bin=$PWD/.build/release/safechat; f=${1:-perf/.data/random-1024MiB.bin}; runs=${2:-5}; bytes=$(stat -c %s "$f")
W=$(mktemp -d /tmp/sessbench.XXXXXX)
"$bin" serve --demo --port 18401 --data-dir $W/data 2>$W/serve.log & pid=$!
trap 'kill $pid; rm -rf $W' EXIT
for _ in $(seq 1 100); do grep -q listening $W/serve.log && break; sleep 0.1; done
export XDG_CONFIG_HOME=$W/config XDG_DATA_HOME=$W/share
echo password123 | "$bin" login --server http://127.0.0.1:18401 --user user1 2>/dev/null
"$bin" keygen $W/key 2>/dev/null
sid=$("$bin" session create bench 2>/dev/null)
cat "$f" >/dev/null
t() { local s=$(date +%s.%N); "$@" >$W/out 2>>$W/err; local e=$(date +%s.%N); awk -v s=$s -v e=$e -v b=$bytes 'BEGIN {printf "%.0f", b/1e6/(e-s)}'; }
for run in $(seq 1 "$runs"); do
  up1=$(t "$bin" upload -q --key $W/key "$f"); id1=$(cat $W/out)
  down1=$(t "$bin" download -q --key $W/key $id1 -o /dev/null)
  up2=$(t "$bin" upload -q --session $sid "$f"); id2=$(cat $W/out)
  down2=$(t "$bin" download -q $id2 -o /dev/null)
  "$bin" rm $id1; "$bin" rm $id2
  echo "run $run: personal upload $up1 / download $down1 MB/s; session upload $up2 / download $down2 MB/s"
done
