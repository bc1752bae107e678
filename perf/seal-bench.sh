#!/usr/bin/env bash
# Seal/open throughput benchmark (release build). Arguments go to safechat-bench, e.g.
#   perf/seal-bench.sh --size-mib 1024 --runs 5
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/install-packages age
swift build -c release --static-swift-stdlib >/dev/null
exec .build/release/safechat-bench --safechat .build/release/safechat --data-dir perf/.data "$@"
