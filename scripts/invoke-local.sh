#!/usr/bin/env bash
# `make invoke EVENT=...`: the handler once on a sample event, against the
# local emulator scripts/with-moto.sh started, with the objects the sample
# events name (events/objects) uploaded to their bucket, logdrop-demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
event=${1:?usage: invoke-local.sh EVENT}
py=".venv/bin/python scripts/local_aws.py --endpoint $AWS_ENDPOINT_URL"
export LOGDROP_LOG_GROUP=${LOGDROP_LOG_GROUP:-/logdrop/local}
$py upload --bucket logdrop-demo --dir events/objects >/dev/null
echo "== shipper invoke --event $event (LOGDROP_LOG_GROUP=$LOGDROP_LOG_GROUP, AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL)"
status=0
target/release/shipper invoke --event "$event" || status=$?
echo "== what $LOGDROP_LOG_GROUP now holds"
$py show --group "$LOGDROP_LOG_GROUP" --head 2
exit $status
