#!/usr/bin/env bash
# The whole path on a local AWS (moto), no account needed. Run by `make demo`
# through scripts/with-moto.sh, which sets AWS_ENDPOINT_URL.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=.venv/bin/python
export LOGDROP_LOG_GROUP=/logdrop/demo
echo "== local AWS at $AWS_ENDPOINT_URL"
echo "== 1. the sample chunks (real Tomcat logs, dated yesterday) land in S3"
$py scripts/local_aws.py --endpoint "$AWS_ENDPOINT_URL" upload --bucket logdrop-demo --dir events/objects
for event in events/s3-put.json events/sqs-batch.json events/eventbridge-object-created.json; do
  echo "== 2. shipper invoke --event $event"
  target/release/shipper invoke --event "$event" 2>/dev/null | head -c 600; echo
done
echo "== 3. a duplicate delivery adds nothing"
target/release/shipper invoke --event events/s3-put.json 2>/dev/null | grep -o '"result": "[a-z_]*"'
echo "== 4. what CloudWatch Logs now holds"
$py scripts/local_aws.py --endpoint "$AWS_ENDPOINT_URL" show --group "$LOGDROP_LOG_GROUP"
