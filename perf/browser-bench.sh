#!/usr/bin/env bash
# The browser client beside the CLI, same gateway, same bytes: 1 GiB random and 1 GiB text-like
# data (perf/.data, from safechat-bench), uploaded and downloaded by `safechat upload/download`
# (a personal key) and through the page in Chromium (Tests/Browser/large_file_test.py, which
# also reports the renderers' peak memory). Beside them, Chromium's own ceiling on the same bytes
# (perf/browser-ceiling.py: a page moving the already-sealed file with no crypto at all). Release
# gateway on 127.0.0.1, runs interleaved; medians and ratios at the end.
#
#   perf/browser-bench.sh [--size-mib 1024] [--runs 3]
set -euo pipefail
cd "$(dirname "$0")/.."
size=1024 runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--size-mib N] [--runs N]" >&2; exit 64 ;;
  esac
done
swift build -c release --static-swift-stdlib >/dev/null
bin=$PWD/.build/release/safechat
work=$(mktemp -d /tmp/safechat-browserbench.XXXXXX)
cleanup() { [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# The page makes a new identity for each of its accounts, so every page run gets two fresh ones.
for set in 1 2; do for run in $(seq 1 "$runs"); do for who in a b; do
  echo page-password | "$bin" user add "page${set}r${run}$who" --data-dir "$work/data" 2>/dev/null
done; done; done
"$bin" serve --demo --port 18403 --max-file-size 64G --data-dir "$work/data" 2>"$work/serve.log" & server_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/serve.log" && break; sleep 0.1; done
export XDG_CONFIG_HOME=$work/cli/config XDG_DATA_HOME=$work/cli/share
echo password123 | "$bin" login --server http://127.0.0.1:18403 --user user1 2>/dev/null
"$bin" keygen "$work/key" 2>/dev/null
mapfile -t files < <(.build/release/safechat-bench --prepare-only --size-mib "$size" --data-dir perf/.data --datasets random,text)
mibps() { awk -v b="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%.0f", b / 1048576 / (e - s) }'; }
i=0
for f in "${files[@]}"; do
  i=$((i + 1))
  bytes=$(stat -c %s "$f"); cat "$f" >/dev/null
  "$bin" seal -q --key "$work/key" "$f" "$work/sealed.bin"
  for run in $(seq 1 "$runs"); do
    s=$(date +%s.%N); id=$("$bin" upload -q --key "$work/key" "$f"); e=$(date +%s.%N); up=$(mibps "$bytes" "$s" "$e")
    s=$(date +%s.%N); "$bin" download -q --key "$work/key" "$id" -o /dev/null; e=$(date +%s.%N); down=$(mibps "$bytes" "$s" "$e")
    ceiling=$(python3 perf/browser-ceiling.py http://127.0.0.1:18403 user1 password123 "$work/sealed.bin" "$id" "$bytes")
    "$bin" rm "$id"
    mkdir -p "$work/page$run"
    # A fresh browser profile per run: the page makes its identities and a session, then moves the file.
    page=$(PAGE_USERS="page${i}r${run}a:page-password,page${i}r${run}b:page-password" python3 Tests/Browser/large_file_test.py http://127.0.0.1:18403 0 100000 "$work/page$run" "$f" | grep "page upload")
    rm -rf "$work/page$run"
    echo "$(basename "$f") run $run: CLI upload $up / download $down MiB/s; $page; $ceiling" | tee -a "$work/runs"
  done
  rm -f "$work/sealed.bin"
done
python3 - "$work/runs" <<'SUMMARY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name = line.split(" run ")[0]
    n = lambda pattern: float(re.search(pattern, line).group(1))
    rows.setdefault(name, []).append({
        "cli_up": n(r"CLI upload (\d+)"), "cli_down": n(r"/ download (\d+) MiB/s;"),
        "page_up": n(r"page upload (\d+)"), "page_down": n(r"page download (\d+)"), "peak": n(r"peak RSS (\d+)"),
        "ceil_up": n(r"ceiling upload (\d+)"), "ceil_up8": n(r"/ (\d+) \(8 MiB"), "ceil_down": n(r", download (\d+) MiB/s$")})
for name, runs in rows.items():
    m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{name}, medians of {len(runs)}: CLI {m['cli_up']:.0f} / {m['cli_down']:.0f} MiB/s; "
          f"page {m['page_up']:.0f} / {m['page_down']:.0f} ({m['page_up'] / m['cli_up']:.2f} / {m['page_down'] / m['cli_down']:.2f} of the CLI), "
          f"renderer peak {m['peak']:.0f} MiB; Chromium's ceiling {m['ceil_up']:.0f} (8 MiB PATCHes {m['ceil_up8']:.0f}) / {m['ceil_down']:.0f} "
          f"({m['ceil_up'] / m['cli_up']:.2f} / {m['ceil_down'] / m['cli_down']:.2f} of the CLI)")
SUMMARY
