#!/usr/bin/env bash
# Sealed files on S3, beside what people use today. For 1 GiB of random and of text-like data,
# in interleaved runs on one SeaweedFS bucket (the one .ci/services starts, on loopback):
#   - `safechat upload` / `safechat download` through a gateway on S3 (--blob-store s3://…);
#   - rclone with a crypt remote over the same bucket (encrypted bulk data to object storage);
#   - `aws s3 cp` of the plain bytes (the store's own speed: no encryption, no gateway);
#   - `safechat upload` / `safechat download` through a gateway on its local store.
# Medians and ratios in one table, then the S3 gateway's peak RSS through one upload and download
# of a larger file (4 GiB by default). Release build; downloads go to /dev/null on every side.
#
#   perf/s3-bench.sh [--size-mib 1024] [--runs 3] [--datasets random,text] [--rss-size-mib 4096]
set -euo pipefail
cd "$(dirname "$0")/.."
size=1024 runs=3 datasets=random,text rss_size=4096
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --datasets) datasets=$2; shift 2 ;;
    --rss-size-mib) rss_size=$2; shift 2 ;;
    *) echo "usage: $0 [--size-mib N] [--runs N] [--datasets random,text] [--rss-size-mib N (0: skip)]" >&2; exit 64 ;;
  esac
done
.ci/install-packages rclone curl
command -v aws >/dev/null || python3 -m pip install -q awscli 2>/dev/null || python3 -m pip install -q --break-system-packages awscli
bash .ci/services start >/dev/null
set -a; . .build/test-services/env; set +a
# rclone and the awscli verify TLS with their own bundles; a bundle set for other tools breaks them.
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=$SAFECHAT_TEST_S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$SAFECHAT_TEST_S3_SECRET_ACCESS_KEY AWS_REGION=us-east-1
endpoint=$SAFECHAT_TEST_S3_ENDPOINT bucket=$SAFECHAT_TEST_S3_BUCKET
swift build -c release --static-swift-stdlib >/dev/null
bin=$PWD/.build/release/safechat
work=$(mktemp -d /tmp/safechat-s3bench.XXXXXX)
prefix=bench-$(basename "$work")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  aws --endpoint-url "$endpoint" s3 rm -q --recursive "s3://$bucket/$prefix" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

IFS=, read -r -a wanted <<< "$datasets"
mapfile -t files < <(.build/release/safechat-bench --prepare-only --size-mib "$size" --data-dir perf/.data --datasets "$datasets")

# Two gateways: one on the bucket, one on its local store.
start_gateway() { # name port [serve options…]
  local name=$1 port=$2; shift 2
  "$bin" serve --demo --port "$port" --data-dir "$work/$name" --max-file-size 64G "$@" 2>"$work/$name.log" &
  pids+=($!); echo $! > "$work/$name.pid"
  for _ in $(seq 1 200); do grep -q listening "$work/$name.log" && break; sleep 0.1; done
  grep -q listening "$work/$name.log" || { echo "s3-bench: the $name gateway did not start:" >&2; tail -3 "$work/$name.log" >&2; exit 1; }
  XDG_CONFIG_HOME=$work/$name-config XDG_DATA_HOME=$work/$name-share sh -c "echo password123 | '$bin' login --server http://127.0.0.1:$port --user user1" 2>/dev/null
}
start_gateway s3 18097 --blob-store "s3://$bucket/$prefix/gateway" --s3-endpoint "$endpoint"
start_gateway local 18098
"$bin" keygen "$work/key" 2>/dev/null
client() { local name=$1; shift; XDG_CONFIG_HOME=$work/$name-config XDG_DATA_HOME=$work/$name-share "$@"; }

# rclone: an S3 remote on the bucket and a crypt remote inside it. The config (credentials and the
# crypt password, obscured as rclone stores it) is a 0600 file, never a command line.
export RCLONE_CONFIG=$work/rclone.conf
crypt_password=$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | rclone obscure -)
(umask 077; cat > "$RCLONE_CONFIG" <<RCLONE
[store]
type = s3
provider = SeaweedFS
endpoint = $endpoint
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
region = us-east-1
force_path_style = true

[sealed]
type = crypt
remote = store:$bucket/$prefix/rclone
password = $crypt_password
RCLONE
)

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Wall-clock seconds of a command (or shell function); its stdout is left in $work/out.
timed() {
  local TIMEFORMAT=%R status=0
  { time "$@" >"$work/out" 2>>"$work/cmd.log"; } 2>"$work/time" || status=$?
  if [ "$status" != 0 ]; then echo "s3-bench: failed ($status): $*" >&2; tail -5 "$work/cmd.log" >&2; return 1; fi
  cat "$work/time"
}
: > "$work/runs"
record() { # dataset tool direction seconds; an empty time is a failed run, which ends the benchmark
  [ -n "$4" ] || exit 1
  echo "$1 $2 $3 $4" >> "$work/runs"
}

for file in "${files[@]}"; do
  name=$(basename "$file" .bin)
  cat "$file" >/dev/null
  for run in $(seq 1 "$runs"); do
    for side in s3 local; do
      record "$name" "gateway-$side" up "$(timed client "$side" "$bin" upload -q --key "$work/key" "$file")"
      id=$(cat "$work/out")
      record "$name" "gateway-$side" down "$(timed client "$side" "$bin" download -q --key "$work/key" "$id" -o /dev/null)"
      client "$side" "$bin" rm "$id" >/dev/null
      if [ "$side" = s3 ]; then
        record "$name" rclone-crypt up "$(timed rclone copyto "$file" "sealed:$name-$run")"
        record "$name" rclone-crypt down "$(timed rclone cat "sealed:$name-$run")"
        rclone deletefile "sealed:$name-$run"
        record "$name" aws-s3-cp up "$(timed aws --endpoint-url "$endpoint" s3 cp --only-show-errors "$file" "s3://$bucket/$prefix/plain/$name-$run")"
        record "$name" aws-s3-cp down "$(timed aws --endpoint-url "$endpoint" s3 cp --only-show-errors "s3://$bucket/$prefix/plain/$name-$run" -)"
        aws --endpoint-url "$endpoint" s3 rm --only-show-errors "s3://$bucket/$prefix/plain/$name-$run"
      fi
    done
  done
done

echo "s3-bench: ${size} MiB per data set, median of $runs interleaved runs, $(nproc) cores, SeaweedFS $(weed version 2>/dev/null | awk '{print $3; exit}') on loopback"
printf '  %-15s %-4s  %9s %9s %9s %9s   %s\n' dataset dir "safechat" "rclone" "aws cp" "safechat" "safechat on S3 ÷"
printf '  %-15s %-4s  %9s %9s %9s %9s   %s\n' "" "" "on S3" "crypt" "plain" "local" "rclone crypt, aws cp"
for file in "${files[@]}"; do
  name=$(basename "$file" .bin)
  bytes=$(stat -c %s "$file")
  for dir in up down; do
    m() { awk -v n="$name" -v t="$1" -v d="$dir" '$1 == n && $2 == t && $3 == d {print $4}' "$work/runs" | median; }
    g=$(m gateway-s3) r=$(m rclone-crypt) a=$(m aws-s3-cp) l=$(m gateway-local)
    awk -v n="$name" -v d="$dir" -v b="$bytes" -v g="$g" -v r="$r" -v a="$a" -v l="$l" 'BEGIN {
      printf "  %-15s %-4s  %6.0f MB/s %4.0f MB/s %4.0f MB/s %4.0f MB/s   %.2f×, %.2f×\n", n, d, b/1e6/g, b/1e6/r, b/1e6/a, b/1e6/l, r/g, a/g }'
  done
done
echo "  (speeds are bytes of the original file per second; ratios are speed of safechat on S3 over the other)"
echo "  gateway on S3: peak RSS $(( $(awk '/VmHWM/ {print $2}' "/proc/$(cat "$work/s3.pid")/status") / 1024 )) MiB over these runs"

if [ "$rss_size" -gt 0 ]; then
  # A fresh gateway on S3, so that its peak RSS is this one file's.
  kill "$(cat "$work/s3.pid")"; sleep 0.5
  start_gateway s3 18097 --blob-store "s3://$bucket/$prefix/gateway" --s3-endpoint "$endpoint"
  mapfile -t big < <(.build/release/safechat-bench --prepare-only --size-mib "$rss_size" --data-dir perf/.data --datasets random)
  up=$(timed client s3 "$bin" upload -q --key "$work/key" "${big[0]}") || exit 1; id=$(cat "$work/out")
  after_up=$(awk '/VmHWM/ {print $2}' "/proc/$(cat "$work/s3.pid")/status")
  down=$(timed client s3 "$bin" download -q --key "$work/key" "$id" -o /dev/null) || exit 1
  after_down=$(awk '/VmHWM/ {print $2}' "/proc/$(cat "$work/s3.pid")/status")
  client s3 "$bin" rm "$id" >/dev/null
  echo "  ${rss_size} MiB on S3: upload $(awk -v b="$(stat -c %s "${big[0]}")" -v t="$up" 'BEGIN {printf "%.0f", b/1e6/t}') MB/s, download $(awk -v b="$(stat -c %s "${big[0]}")" -v t="$down" 'BEGIN {printf "%.0f", b/1e6/t}') MB/s; gateway peak RSS $((after_up / 1024)) MiB after the upload, $((after_down / 1024)) MiB after the download"
fi
