#!/usr/bin/env bash
# The file-system operations behind the EFS mode's cost (README, "EFS drops",
# "Cost per task-month"), counted with strace on a local directory standing
# for EFS; the binaries' S3 is moto's (run it through scripts/with-moto.sh).
#
#  1. One task's sidecar (LOGDROP_EFS_ROOT, the defaults) for SECS seconds
#     while a writer stands in for Tomcat: 10 access lines every 10 s (the
#     buffered AccessLogValve's flush) and one JULI line a minute.
#  2. One sweeper run (`sweeper --root`) over DIRS directories whose owner is
#     alive, the case of every live task at every scheduled run.
#
# Prints the system calls per minute of the sidecar and per directory of the
# sweeper, by the file they touch. Usage (from the repository's root):
#   scripts/with-moto.sh scripts/efs-ops.sh [SIDECAR_BIN [SWEEPER_BIN]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sidecar=${1:-$root/target/release/sidecar}
sweeper=${2:-$root/target/release/sweeper}
SECS=${SECS:-180}
DIRS=${DIRS:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
calls=openat,rename,fsync,write,unlink,mkdir,statx,newfstatat,getdents64,flock,read,pread64,close,utimensat
"$root/.venv/bin/python" -c 'import boto3; boto3.client("s3").create_bucket(Bucket="efs-ops")'

task="$work/efs/demo/t1"
mkdir -p "$task"
python3 - "$task" "$SECS" <<'PY' &
import sys, time
d, secs = sys.argv[1], int(sys.argv[2])
t0, i = time.time(), 0
while time.time() - t0 < secs + 10:
    with open(f"{d}/localhost_access_log.2026-12-03.txt", "a") as f:
        for _ in range(10):
            f.write(f'10.0.0.1 - - [03/Dec/2026:08:00:{i % 60:02d} +0000] "GET /item/{i} HTTP/1.1" 200 {i}\n')
            i += 1
    if i % 60 == 0:
        with open(f"{d}/catalina.2026-12-03.log", "a") as f:
            f.write(f"03-Dec-2026 08:00:00.000 INFO [main] org.apache.catalina.startup.Catalina.start line {i}\n")
    time.sleep(10)
PY
writer=$!
LOGDROP_BUCKET=efs-ops LOGDROP_EFS_ROOT="$work/efs" LOGDROP_CLUSTER=demo LOGDROP_TASK_ID=t1 RUST_LOG=warn \
  strace -f -qq -y -e trace="$calls" -o "$work/sidecar.trace" "$sidecar" >/dev/null 2>&1 &
tracer=$!
sleep 1
pid=$(pgrep -P "$tracer")
started=$(date +%s.%N)
sleep "$SECS"
kill -TERM "$pid"
wait "$tracer" || true
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
kill "$writer" 2>/dev/null || true

sweep="$work/sweep"
python3 - "$sweep/demo" "$DIRS" <<'PY'
import datetime, json, os, sys
root, n = sys.argv[1], int(sys.argv[2])
now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
for i in range(n):
    d = f"{root}/t{i:04d}"
    os.makedirs(f"{d}/.logdrop")
    with open(f"{d}/.logdrop/owner.json", "w") as f:
        json.dump({"version": 1, "cluster": "demo", "task_id": f"t{i:04d}", "heartbeat": now}, f)
    for name in ("localhost_access_log.2026-12-03.txt", "catalina.2026-12-03.log"):
        with open(f"{d}/{name}", "w") as f:
            f.write("line\n" * 100)
PY
LOGDROP_BUCKET=efs-ops RUST_LOG=warn strace -f -qq -y -e trace="$calls" -o "$work/sweeper.trace" \
  "$sweeper" --root "$sweep" >"$work/report.json"
start=$(date +%s.%N)
LOGDROP_BUCKET=efs-ops RUST_LOG=warn "$sweeper" --root "$sweep" >/dev/null
wall=$(echo "$(date +%s.%N) - $start" | bc)

python3 - "$work" "$elapsed" "$DIRS" "$wall" <<'PY'
import collections, json, re, sys
work, elapsed, dirs, wall = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def count(trace, base, pattern, repl):
    c = collections.Counter()
    for line in open(f"{work}/{trace}"):
        m = re.match(r"\d+\s+(\w+)\((.*)", line)
        if not m:
            continue
        paths = re.findall(r"<(" + re.escape(base) + r"[^>]*)>", m[2]) + re.findall(r'"(' + re.escape(base) + r'[^"]*)"', m[2])
        if paths:
            c[(re.sub(pattern, repl, paths[0][len(base):]) or "/", m[1])] += 1
    return c

side = count("sidecar.trace", f"{work}/efs/demo/t1", r"/[0-9a-f]{16}\.json", "/<file>.json")
print(f"sidecar: {elapsed:.0f} s traced; system calls per minute, by path under the task's directory")
for (path, call), n in sorted(side.items()):
    print(f"  {n * 60 / elapsed:8.2f}  {call:11} {path}")
report = json.load(open(f"{work}/report.json"))
sweep = count("sweeper.trace", f"{work}/sweep", r"/t\d{4}", "/<task>")
print(f"sweeper: {dirs} directories of live owners, report {report}; one run {wall * 1000:.0f} ms wall "
      f"(process start included); system calls per directory")
for (path, call), n in sorted(sweep.items()):
    if "<task>" in path:
        print(f"  {n / dirs:8.2f}  {call:11} {path}")
print("  (once per run: " + ", ".join(f"{call} {path}" for (path, call), n in sorted(sweep.items())
                                     if "<task>" not in path) + ")")
PY
