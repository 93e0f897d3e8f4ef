#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) with libFuzzer, JOBS at a
# time (default 2), and prints executions and crashes per target.
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz --locked
# Usage: scripts/fuzz.sh [SECONDS] [JOBS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
jobs="${2:-2}"
mkdir -p logs
cargo +nightly fuzz build -O
targets=(frame messages token csr chat_grammar gateway_toml node_toml moltbot_toml wecom_frame)
run_one() {
  local t="$1"
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    > "logs/$t.log" 2>&1 || true
  local execs crashes
  execs=$(grep -m1 'stat::number_of_executed_units' "logs/$t.log" | awk '{print $2}')
  crashes=$(ls "artifacts/$t" 2>/dev/null | grep -c -E '^(crash|oom|timeout|leak)-' || true)
  echo "$t executions=${execs:-?} crashes=${crashes:-0} seconds=$secs"
}
export -f run_one
export secs
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
