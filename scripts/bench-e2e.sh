#!/usr/bin/env bash
# End-to-end measurements for `make bench`, each next to a baseline measured
# in the same run on the same machine. Runs the release binaries against a
# local S3 (moto) and, for the shipper's large objects, a counting stand-in
# for CloudWatch Logs (moto would be the bottleneck, not the shipper).
#   SHIPPER_SIZES="256M 1G"  SIDECAR_MB=100  IDLE_SECONDS=60
#   SIDECAR=target/sidecar-x86_64-unknown-linux-musl (the static build; default: target/release/sidecar)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then exec scripts/with-moto.sh "$0" "$@"; fi
py=.venv/bin/python
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --quiet --bins --example gen
gen=target/release/examples/gen
sidecar=${SIDECAR:-target/release/sidecar}
out=target/bench-e2e.md
report() { echo "$*" | tee -a "$out"; }
: >"$out"
report "# logdrop end-to-end benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"

# --- shipper: peak memory and throughput on large objects -----------------
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$py scripts/null_logs.py "$port" & pids+=($!)
sleep 1
report ""
report "## shipper invoke, one object, CloudWatch Logs stand-in"
report "| uncompressed | peak RSS | wall s | CPU s | MB/s | events/s | PutLogEvents calls | minimum calls | batches full |"
report "|---|---|---|---|---|---|---|---|---|"
for size in ${SHIPPER_SIZES:-256M 1G}; do
  n=$($gen access "$size" "$work/obj.gz" --gzip 2>&1 | awk '{print $2}')
  key=$(printf 'logs/bench/t%s/localhost_access_log.2026-11-24.txt/0/%015d-%015d.gz' "$size" 0 "$n")
  $py scripts/local_aws.py --endpoint "$AWS_ENDPOINT_URL" put --bucket bench --key "$key" --file "$work/obj.gz"
  printf '{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"bench"},"object":{"key":"%s"}}}]}' "$key" >"$work/event.json"
  before=$(curl -s "http://127.0.0.1:$port/stats")
  AWS_ENDPOINT_URL_CLOUDWATCH_LOGS="http://127.0.0.1:$port" LOGDROP_LOG_GROUP=/bench RUST_LOG=warn \
    /usr/bin/time -f "%M %e %U %S" -o "$work/time" target/release/shipper invoke --event "$work/event.json" >/dev/null
  after=$(curl -s "http://127.0.0.1:$port/stats")
  read -r rss wall user sys <"$work/time"
  $py - "$n" "$rss" "$wall" "$user" "$sys" "$before" "$after" <<'PY' | tee -a "$out"
import json, math, sys
n, rss, wall, user, sys_ = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
b, a = json.loads(sys.argv[6] or "{}"), json.loads(sys.argv[7])
d = {k: a[k] - b.get(k, 0) for k in a}
minimum = max(math.ceil(d["bytes"] / 1048576), math.ceil(d["events"] / 10000))
print(f"| {n / 2**20:.0f} MiB | {rss / 1024:.1f} MiB | {wall:.1f} | {user + sys_:.1f} | {n / 1e6 / wall:.0f} | {d['events'] / wall:,.0f} | {d['calls']} | {minimum} | {minimum / d['calls']:.1%} |")
PY
  rm -f "$work/obj.gz"
done

# --- sidecar: CPU against gzip, memory, idle cost, size --------------------
mb=${SIDECAR_MB:-100}
mkdir -p "$work/logs"
file="$work/logs/localhost_access_log.2026-11-24.txt"
$gen access "${mb}M" "$file" 2>/dev/null
# The bucket, also when the shipper's part (which creates it) is skipped with SHIPPER_SIZES=" ".
echo >"$work/empty"
$py scripts/local_aws.py --endpoint "$AWS_ENDPOINT_URL" put --bucket bench --key bench-ready --file "$work/empty"
report ""
report "## $sidecar --once on ${mb} MiB of access log to local S3, against GNU gzip -c on the same file"
report "| level | gzip -c CPU s | sidecar CPU s | ratio | sidecar peak RSS | chunks |"
report "|---|---|---|---|---|---|"
for level in 1 6; do
  /usr/bin/time -f "%U %S" -o "$work/gz" gzip "-$level" -c "$file" >/dev/null
  read -r gu gs <"$work/gz"
  rm -rf "$work/logs/.logdrop"
  LOGDROP_BUCKET=bench LOGDROP_LOG_DIR="$work/logs" LOGDROP_CLUSTER="bench-l$level" LOGDROP_TASK_ID=t \
    LOGDROP_GZIP_LEVEL=$level RUST_LOG=warn /usr/bin/time -f "%M %U %S" -o "$work/sc" "$sidecar" --once
  read -r rss su ss <"$work/sc"
  chunks=$($py -c "
import boto3,sys
s3=boto3.client('s3',endpoint_url='$AWS_ENDPOINT_URL',region_name='us-east-1',aws_access_key_id='testing',aws_secret_access_key='testing')
print(s3.list_objects_v2(Bucket='bench',Prefix='logs/bench-l$level/')['KeyCount'])")
  $py -c "g=$gu+$gs; s=$su+$ss; print(f'| {$level} | {g:.2f} | {s:.2f} | {s/g:.2f}x | {$rss/1024:.1f} MiB | $chunks |')" | tee -a "$out"
done

# --- sweeper (EFS drops) against sidecar --once, same file, same build kind --
mkdir -p "$work/efs/bench-sweep/t" "$work/once"
ln "$file" "$work/efs/bench-sweep/t/" && ln "$file" "$work/once/"
report ""
report "## sweeper --root (a directory with no owner) against sidecar --once, ${mb} MiB of access log, level 1, release builds"
report "| binary | wall s | CPU s | MB/s (wall) | peak RSS |"
report "|---|---|---|---|---|"
LOGDROP_BUCKET=bench LOGDROP_LOG_DIR="$work/once" LOGDROP_CLUSTER=bench-once LOGDROP_TASK_ID=t RUST_LOG=warn \
  /usr/bin/time -f "%e %U %S %M" -o "$work/t1" target/release/sidecar --once
LOGDROP_BUCKET=bench LOGDROP_OWNER_STALE=0s RUST_LOG=warn \
  /usr/bin/time -f "%e %U %S %M" -o "$work/t2" target/release/sweeper --root "$work/efs" >/dev/null
for t in "sidecar --once:$work/t1" "sweeper:$work/t2"; do
  read -r wall u s rss <"${t#*:}"
  $py -c "print(f'| ${t%%:*} | {$wall:.2f} | {$u+$s:.2f} | {$mb*1.048576/$wall:.0f} | {$rss/1024:.1f} MiB |')" | tee -a "$out"
done

idle=${IDLE_SECONDS:-60}
LOGDROP_BUCKET=bench LOGDROP_LOG_DIR="$work/logs" LOGDROP_CLUSTER=bench-l6 LOGDROP_TASK_ID=t RUST_LOG=warn \
  "$sidecar" & sc=$!; pids+=($sc)
sleep 3
t0=$(awk '{print $14 + $15}' "/proc/$sc/stat")
sleep "$idle"
t1=$(awk '{print $14 + $15}' "/proc/$sc/stat")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$sc/status")
kill -TERM "$sc"; wait "$sc" || true
hz=$(getconf CLK_TCK)
report ""
report "## sidecar idle (no writes for ${idle} s) and size"
$py -c "print(f'| idle CPU | {($t1-$t0)/$hz/$idle*100:.3f}% of a core over ${idle} s |')" | tee -a "$out"
report "| peak RSS while following | $((rss / 1024)) MiB |"
report "| $sidecar ($(file -b "$sidecar" | grep -o 'statically linked\|dynamically linked')) | $(stat -c %s "$sidecar") bytes |"
echo "written to $out"
