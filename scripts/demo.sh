#!/usr/bin/env bash
# The whole path on a local AWS (moto), no account needed. Run by `make demo`
# through scripts/with-moto.sh, which sets AWS_ENDPOINT_URL.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=".venv/bin/python scripts/local_aws.py --endpoint $AWS_ENDPOINT_URL"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/logs"
export LOGDROP_LOG_GROUP=/logdrop/demo LOGDROP_BUCKET=logdrop-demo LOGDROP_LOG_DIR="$work/logs" \
  LOGDROP_CLUSTER=demo LOGDROP_TASK_ID=5e1dcafe0000demo LOGDROP_FLUSH_INTERVAL=1s LOGDROP_POLL_INTERVAL=200ms \
  LOGDROP_CHUNK_BYTES=65536 RUST_LOG=warn

echo "== local AWS at $AWS_ENDPOINT_URL"
echo "== 1. bucket $LOGDROP_BUCKET notifies an SQS queue of every new chunk (as template.yaml does)"
$py notify --bucket "$LOGDROP_BUCKET" --queue logdrop-chunks
echo "== 2. the sidecar follows $LOGDROP_LOG_DIR while 'Tomcat' writes real Tomcat 10 logs into it"
target/release/sidecar >"$work/sidecar.log" 2>&1 &
sidecar=$!
$py write-slowly --objects events/objects --dir "$work/logs"
sleep 1
echo "== 3. SIGTERM: the sidecar ships what it still holds and exits"
kill -TERM $sidecar
wait $sidecar && echo "   sidecar exited 0"
echo "== 4. the sidecar's offsets survive a restart, one record per file in $LOGDROP_LOG_DIR/.logdrop/files/:"
cat "$work/logs/.logdrop/files/"*.json | grep -E '"(name|generation|offset)"' | tr -s ' ' | paste -sd' ' | cut -c1-200
echo "== 5. shipper poll consumes the queue as the Lambda's SQS event source mapping would"
queue=$($py queue-url --queue logdrop-chunks)
target/release/shipper poll --queue-url "$queue" --until-empty --wait-seconds 2 2>>"$work/shipper.log"
echo "   (the summary counts S3's test event as a message too)"
echo "== 6. a duplicate delivery of every chunk adds nothing:"
$py renotify --bucket "$LOGDROP_BUCKET" --queue logdrop-chunks
target/release/shipper poll --queue-url "$queue" --until-empty --wait-seconds 2 2>>"$work/shipper.log"
echo "== 7. the sample events in events/ work the same way (make invoke EVENT=...)"
$py upload --bucket "$LOGDROP_BUCKET" --dir events/objects >/dev/null
for event in events/s3-put.json events/sqs-batch.json events/eventbridge-object-created.json; do
  printf '   %-40s ' "$event"
  target/release/shipper invoke --event "$event" 2>/dev/null | tr -d '\n ' | cut -c1-90
done
echo "== 8. what CloudWatch Logs now holds"
$py show --group "$LOGDROP_LOG_GROUP"
echo "== 9. EFS drops: a task writing to $work/efs is killed without warning (SIGKILL, no grace)"
efs_task=5e1dcafe0001demo
mkdir -p "$work/efs/demo/$efs_task"
env -u LOGDROP_LOG_DIR LOGDROP_EFS_ROOT="$work/efs" LOGDROP_TASK_ID=$efs_task LOGDROP_FLUSH_INTERVAL=1h \
  target/release/sidecar >"$work/sidecar-efs.log" 2>&1 &
sidecar=$!
for i in 1 2 3; do
  printf '%s.00%s INFO [main] demo.Last line %s before the kill\n' "$(LC_ALL=C date -u '+%d-%b-%Y %H:%M:%S')" "$i" "$i" \
    >>"$work/efs/demo/$efs_task/catalina.$(date -u +%F).log"
done
sleep 1
kill -KILL $sidecar; wait $sidecar 2>/dev/null || true
echo "   objects of task $efs_task in S3 after the kill: $($py count --bucket "$LOGDROP_BUCKET" --prefix "logs/demo/$efs_task/")"
echo "== 10. the sweeper (a scheduled Lambda in AWS) ships the directory no live sidecar owns"
# In AWS the owner goes stale after 30 s, and the files have been quiet for longer than the
# hold time-out by then; the demo says both at once.
env -u LOGDROP_LOG_DIR LOGDROP_OWNER_STALE=0s LOGDROP_HOLD_TIMEOUT=0s RUST_LOG=warn target/release/sweeper --root "$work/efs" \
  | tr -d '\n ' | cut -c1-120
target/release/shipper poll --queue-url "$queue" --until-empty --wait-seconds 2 2>>"$work/shipper.log"
$py show --group "$LOGDROP_LOG_GROUP" --task $efs_task --tail 3
