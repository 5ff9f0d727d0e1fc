#!/usr/bin/env python3
"""Least privilege, proven on the real binaries' traffic.

Creates the stack (template.yaml, SAM-transformed) three times in a moto
server of its own: with DynamoDB checkpoints and S3 notifications, and with S3
checkpoints and EventBridge, each with examples/ecs-task.yaml beside it; and
with the EFS parameters set (the sweeper), with examples/ecs-task-efs.yaml.
With moto's recorder on, it runs the real binaries as the stack and the task
definition configure them: the sidecar (`--once`, the task definition's
environment) uploads two Tomcat files; the shipper runs as the Lambda
handler (`shipper invoke`) on the queue's messages, wrapped as Lambda's SQS
event, and then `shipper poll --until-empty` after a second upload (the
function's environment as created). On the EFS stack, a local directory stands
for the file system: the sidecar (`--once`, the EFS task definition's
environment) ships a task's directory, the task dies with lines unshipped, a
writer with no sidecar drops files into another directory, and the sweeper
(`--root DIR`, the sweeper function's environment) ships both. Each binary
signs with its own access key.

Every recorded request is turned into an IAM request (action, resource ARN,
the condition keys that apply) and evaluated by @cloud-copilot/iam-simulate
(scripts/iam-evaluate.mjs) against the policies the template gives its
principal: the shipper role's policy, the SidecarPolicy (with the
SidecarEfsPolicy on EFS), the sweeper role's policy, and the bucket or queue
policy of the resource. What Lambda and ECS do with the roles and no binary
records (the function's log lines, the sweeper's network interfaces, mounting
EFS through the access point) is evaluated too. Every one must be allowed; each request in the
list of what must never be possible (the sidecar reading checkpoints or
objects, the shipper deleting objects or writing to another log group, the
sweeper reading objects or checkpoints or writing another bucket, mounting EFS
without the access point, anything over plain HTTP) must be denied. A request this script cannot map
to an IAM action fails too: a new SDK call needs a line here and a
permission in the template.

Usage: check-permissions.py --shipper BIN --sidecar BIN --sweeper BIN [--template FILE]
[--report FILE]; prints the request kinds and the statements that allow
them; exits 1 naming every failure.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from urllib.parse import parse_qs, unquote, urlparse

import requests

from cfn_local import (ACCOUNT, REGION, ROOT, SETUP_KEY, client, deploy, efs_network, fail, run, start_moto,
                       upload_code_stub)

SIDECAR_KEY = "AKIALOGDROPSIDECAR00"
SHIPPER_KEY = "AKIALOGDROPSHIPPER00"
SWEEPER_KEY = "AKIALOGDROPSWEEPER00"
TASK_TEMPLATE = os.path.join(ROOT, "examples/ecs-task.yaml")
EFS_TASK_TEMPLATE = os.path.join(ROOT, "examples/ecs-task-efs.yaml")
NODE_EVALUATOR = os.path.join(ROOT, "scripts/iam-evaluate.mjs")
BINARY_TIMEOUT = 120  # seconds: a hung binary fails the check instead of hanging it

# Two Tomcat files as the sidecar finds them (LOGDROP_FILES' defaults).
CATALINA = "catalina.2026-11-24.log"
ACCESS = "localhost_access_log.2026-11-24.txt"


def tomcat_lines(first, count):
    lines = []
    for i in range(first, first + count):
        lines.append(f"24-Nov-2026 22:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d} INFO [main] "
                     f"org.apache.catalina.startup.Catalina.start line {i}\n")
    return "".join(lines)


def access_lines(first, count):
    return "".join(f'10.0.0.{i % 250} - - [24/Nov/2026:22:10:{i % 60:02d} +0000] "GET /item/{i} HTTP/1.1" 200 {i}\n'
                   for i in range(first, first + count))


# ---------------------------------------------------------------- scenario


def binary(cmd, env, what):
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=BINARY_TIMEOUT)
    except subprocess.TimeoutExpired:
        fail(f"{what}: still running after {BINARY_TIMEOUT} s")
    if out.returncode != 0:
        fail(f"{what}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return out.stdout


def aws_env(endpoint, key):
    return {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUST_LOG": "warn",
    }


class Deployment:
    """A logdrop stack, the task stack beside it, and how its binaries run."""

    def __init__(self, endpoint, template, name, params, efs=None):
        self.endpoint = endpoint
        self.efs = efs
        if efs:
            params = {**params, **efs["params"]}
        self.stack = deploy(endpoint, name, template, params)
        self.task = deploy(endpoint, f"{name}-task", EFS_TASK_TEMPLATE if efs else TASK_TEMPLATE,
                           {"LogdropStack": name})
        o = self.stack.outputs
        self.sweeper = o["SweeperFunctionName"]["OutputValue"] if efs else None
        self.bucket = o["BucketName"]["OutputValue"]
        self.queue_url = o["ChunkQueueUrl"]["OutputValue"]
        self.queue_arn = self.stack.attr("ChunkQueue", "Arn")
        self.function = o["ShipperFunctionName"]["OutputValue"]
        self.log_group = self.stack.params["LogGroupName"]

    def container_env(self):
        # The task definition's environment for the logdrop container, as created.
        ecs = client(self.endpoint, "ecs")
        td = ecs.describe_task_definition(
            taskDefinition=self.task.outputs["TaskDefinitionArn"]["OutputValue"])["taskDefinition"]
        container = next(c for c in td["containerDefinitions"] if c["name"] == "logdrop")
        env = aws_env(self.endpoint, SIDECAR_KEY)
        env.update({e["name"]: str(e["value"]) for e in container.get("environment", [])})
        return env

    def sidecar_env(self, log_dir, task_id):
        env = self.container_env()
        # What ECS's task metadata would tell, and the mount point's path.
        env.update({"LOGDROP_LOG_DIR": log_dir, "LOGDROP_CLUSTER": "demo", "LOGDROP_TASK_ID": task_id})
        return env

    def efs_sidecar_env(self, root, link, task_id):
        env = self.container_env()
        if env.get("LOGDROP_EFS_ROOT") != "/efs" or not env.get("LOGDROP_EFS_LINK", "").startswith("/handoff/"):
            fail(f"{self.stack.name}: the EFS task's sidecar is not set up for EFS: {env}")
        # The EFS volume's and the hand-off volume's mount points, here.
        env.update({"LOGDROP_EFS_ROOT": root, "LOGDROP_EFS_LINK": link,
                    "LOGDROP_CLUSTER": "demo", "LOGDROP_TASK_ID": task_id})
        return env

    def sweeper_env(self):
        conf = client(self.endpoint, "lambda").get_function_configuration(FunctionName=self.sweeper)
        env = aws_env(self.endpoint, SWEEPER_KEY)
        env.update({k: str(v) for k, v in conf.get("Environment", {}).get("Variables", {}).items()})
        # The task is gone: its sidecar's owner record counts as stale now
        # (in AWS, LOGDROP_OWNER_STALE after its last heartbeat).
        env["LOGDROP_OWNER_STALE"] = "0s"
        return env

    def shipper_env(self):
        conf = client(self.endpoint, "lambda").get_function_configuration(FunctionName=self.function)
        env = aws_env(self.endpoint, SHIPPER_KEY)
        env.update({k: str(v) for k, v in conf.get("Environment", {}).get("Variables", {}).items()})
        return env

    def messages(self):
        sqs = client(self.endpoint, "sqs")
        got = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                        AttributeNames=["All"]).get("Messages", [])
            if not batch:
                return got
            got += batch

    def lambda_event(self, messages):
        return {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": self.queue_arn, "awsRegion": REGION,
        } for m in messages]}


def scenario(dep, shipper_bin, sidecar_bin, work, task_id):
    log_dir = os.path.join(work, dep.stack.name, "logs")
    os.makedirs(log_dir)
    files = {CATALINA: tomcat_lines, ACCESS: access_lines}
    for name, lines in files.items():
        with open(os.path.join(log_dir, name), "w") as f:
            f.write(lines(0, 200))
    sidecar_env = dep.sidecar_env(log_dir, task_id)
    binary([sidecar_bin, "--once"], sidecar_env, f"{dep.stack.name}: sidecar --once")

    # The shipper as Lambda runs it: the messages, then Lambda deletes them.
    messages = dep.messages()
    if not messages:
        fail(f"{dep.stack.name}: the sidecar's upload put nothing in the queue")
    event = os.path.join(work, dep.stack.name, "event.json")
    with open(event, "w") as f:
        json.dump(dep.lambda_event(messages), f)
    out = binary([shipper_bin, "invoke", "--event", event], dep.shipper_env(), f"{dep.stack.name}: shipper invoke")
    failures = json.loads(out).get("batchItemFailures")
    if failures:
        fail(f"{dep.stack.name}: shipper invoke reported failures {failures}")
    sqs = client(dep.endpoint, "sqs")
    for m in messages:
        sqs.delete_message(QueueUrl=dep.queue_url, ReceiptHandle=m["ReceiptHandle"])

    # More lines, a second upload, and `shipper poll` consuming the queue.
    for name, lines in files.items():
        with open(os.path.join(log_dir, name), "a") as f:
            f.write(lines(200, 100))
    binary([sidecar_bin, "--once"], sidecar_env, f"{dep.stack.name}: second sidecar --once")
    binary([shipper_bin, "poll", "--queue-url", dep.queue_url, "--until-empty", "--wait-seconds", "0"],
           dep.shipper_env(), f"{dep.stack.name}: shipper poll")

    # It did ship: every line of both files is in the file log group.
    logs = client(dep.endpoint, "logs")
    events = 0
    for stream in logs.describe_log_streams(logGroupName=dep.log_group)["logStreams"]:
        events += len(logs.get_log_events(logGroupName=dep.log_group, logStreamName=stream["logStreamName"],
                                          startFromHead=True)["events"])
    if events != 600:
        fail(f"{dep.stack.name}: {events} events in {dep.log_group}, want 600 (300 lines of each file)")


def efs_scenario(dep, sidecar_bin, sweeper_bin, work, task_id):
    """The sidecar on "EFS" ships a task's directory and the task dies with
    lines unshipped; a writer with no sidecar drops files into another
    directory; one sweeper run ships both."""
    base = os.path.join(work, dep.stack.name)
    root, handoff = os.path.join(base, "efs"), os.path.join(base, "handoff")
    os.makedirs(handoff)
    task_dir = os.path.join(root, "demo", task_id)
    os.makedirs(task_dir)
    files = {CATALINA: tomcat_lines, ACCESS: access_lines}
    for name, lines in files.items():
        with open(os.path.join(task_dir, name), "w") as f:
            f.write(lines(0, 200))
    env = dep.efs_sidecar_env(root, os.path.join(handoff, "logs"), task_id)
    binary([sidecar_bin, "--once"], env, f"{dep.stack.name}: sidecar --once on EFS")
    if os.path.realpath(os.path.join(handoff, "logs")) != os.path.realpath(task_dir):
        fail(f"{dep.stack.name}: the sidecar's link does not point at {task_dir}")
    left = 0
    for name, lines in files.items():
        text = lines(200, 100)
        left += len(text.encode())
        with open(os.path.join(task_dir, name), "a") as f:
            f.write(text)
    plain = os.path.join(root, "demo", f"{int(task_id, 16) + 1:032x}")
    os.makedirs(plain)
    for name, lines in files.items():
        text = lines(0, 50)
        left += len(text.encode())
        with open(os.path.join(plain, name), "w") as f:
            f.write(text)
    # Both writers are gone: their files have been quiet for an hour.
    hour_ago = time.time() - 3600
    for d in (task_dir, plain):
        for name in files:
            os.utime(os.path.join(d, name), (hour_ago, hour_ago))
    out = binary([sweeper_bin, "--root", root], dep.sweeper_env(), f"{dep.stack.name}: sweeper --root")
    report = json.loads(out)
    got = {k: report.get(k) for k in ("swept", "failed", "bytes")}
    if got != {"swept": 2, "failed": 0, "bytes": left}:
        fail(f"{dep.stack.name}: sweeper report {report}, want 2 directories swept, {left} bytes")
    s3 = client(dep.endpoint, "s3")
    for d in (task_id, os.path.basename(plain)):
        keys = s3.list_objects_v2(Bucket=dep.bucket, Prefix=f"logs/demo/{d}/segment/").get("KeyCount", 0)
        if not keys:
            fail(f"{dep.stack.name}: no segment of {d} in the bucket")


# ---------------------------------------------------------------- requests


def header(headers, name):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def access_key(headers):
    auth = header(headers, "Authorization") or ""
    if "Credential=" not in auth:
        return None
    return auth.split("Credential=", 1)[1].split("/", 1)[0]


def body_json(entry):
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    return json.loads(body) if body.strip() else {}


def s3_request(entry):
    """(action, resource, context) of an S3 request (path-style, as the
    binaries address a custom endpoint)."""
    url = urlparse(entry["url"])
    query = parse_qs(url.query, keep_blank_values=True)
    bucket, _, key = url.path.lstrip("/").partition("/")
    key = unquote(key)
    method = entry["method"]
    h = entry["headers"]
    context = {"s3:signatureversion": "AWS4-HMAC-SHA256", "s3:authType": "REQUEST-HEADER"}
    sha = header(h, "x-amz-content-sha256")
    if sha:
        context["s3:x-amz-content-sha256"] = sha
    for name in ("x-amz-server-side-encryption", "x-amz-acl", "x-amz-storage-class"):
        if header(h, name):
            context[f"s3:{name}"] = header(h, name)
    # Conditional writes (the S3 checkpoint store's).
    for name in ("if-none-match", "if-match"):
        if method == "PUT" and header(h, name):
            context[f"s3:{name}"] = header(h, name)
    if not key:
        arn = f"arn:aws:s3:::{bucket}"
        if method == "GET" and not ({"versions", "location", "uploads", "policy"} & set(query)):
            for q in ("prefix", "delimiter", "max-keys"):
                if q in query:
                    context[f"s3:{q}"] = query[q][0]
            return "s3:ListBucket", arn, context
        return None
    arn = f"arn:aws:s3:::{bucket}/{key}"
    if header(h, "x-amz-copy-source"):
        return None  # a copy reads another object too: map it before using it
    if method in ("GET", "HEAD") and not ({"uploadId", "acl", "tagging", "attributes"} & set(query)):
        return "s3:GetObject", arn, context
    if method == "PUT" and not ({"acl", "tagging", "retention", "legal-hold"} & set(query)):
        return "s3:PutObject", arn, context  # a whole object, or a part of a multipart upload
    if method == "POST" and ("uploads" in query or "uploadId" in query):
        return "s3:PutObject", arn, context  # a multipart upload's start or completion
    if method == "DELETE" and "uploadId" in query:
        return "s3:AbortMultipartUpload", arn, context
    if method == "DELETE" and not query:
        return "s3:DeleteObject", arn, context
    return None


def json_request(entry, target):
    """(action, resource, context) of a JSON-protocol request (X-Amz-Target)."""
    service_prefix, _, operation = target.partition(".")
    body = body_json(entry)
    if service_prefix.startswith("DynamoDB_"):
        table = body.get("TableName")
        context = {}
        key = body.get("Key") or body.get("Item") or {}
        if "pk" in key:
            context["dynamodb:LeadingKeys"] = [next(iter(key["pk"].values()))]
        if body.get("ReturnValues"):
            context["dynamodb:ReturnValues"] = body["ReturnValues"]
        if table and operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "DescribeTable"):
            return f"dynamodb:{operation}", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}", context
        return None
    if service_prefix.startswith("Logs_"):
        group = body.get("logGroupName")
        base = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
        if operation in ("CreateLogStream", "PutLogEvents") and group and body.get("logStreamName"):
            return f"logs:{operation}", f"{base}:log-stream:{body['logStreamName']}", {}
        if operation in ("CreateLogGroup", "PutRetentionPolicy", "DescribeLogStreams") and group:
            return f"logs:{operation}", base, {}
        return None
    if service_prefix == "AmazonSQS":
        url = body.get("QueueUrl", "")
        name = url.rstrip("/").split("/")[-1]
        if name and operation in ("ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
                                  "ChangeMessageVisibilityBatch", "GetQueueAttributes", "SendMessage"):
            # The batch calls are authorized as their single actions.
            action = operation.replace("Batch", "")
            return f"sqs:{action}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", {}
        return None
    return None


def iam_request(entry):
    target = header(entry["headers"], "X-Amz-Target")
    if target:
        return json_request(entry, target)
    auth = header(entry["headers"], "Authorization") or ""
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if "Credential=" in auth else []
    if len(scope) >= 4 and scope[3] == "s3":
        return s3_request(entry)
    return None


def recorded_requests(path, principals):
    """[(who, action, resource, context, description)] of the recording, the
    setup's own requests left out; fails on one it cannot map."""
    out, unmapped = [], []
    with open(path) as f:
        for line in f:
            entry = json.loads(line)
            key = access_key(entry["headers"])
            if key == SETUP_KEY:
                continue
            if key not in principals:
                unmapped.append(f"unsigned or unknown key {key}: {entry['method']} {entry['url']}")
                continue
            mapped = iam_request(entry)
            what = f"{entry['method']} {urlparse(entry['url']).path} {header(entry['headers'], 'X-Amz-Target') or ''}"
            if mapped is None:
                unmapped.append(f"{principals[key]}: {what.strip()}")
                continue
            out.append((principals[key], *mapped, what.strip()))
    if unmapped:
        fail("requests with no IAM action mapped in check-permissions.py (map each, and grant it in "
             "template.yaml):\n  " + "\n  ".join(unmapped))
    return out


# ---------------------------------------------------------------- policies


class Policies:
    """What the template gives each principal of one deployment."""

    def __init__(self, dep):
        stack = dep.stack
        res = stack.template["Resources"]
        role = stack.physical["ShipperRole"]
        self.identity = {
            "shipper": [{"name": f"ShipperRole/{p['PolicyName']}", "policy": p["PolicyDocument"]}
                        for p in stack.resolve(res["ShipperRole"]["Properties"]["Policies"])],
            "sidecar": [{"name": "SidecarPolicy",
                         "policy": stack.resolve(res["SidecarPolicy"]["Properties"]["PolicyDocument"])}],
        }
        self.principal = {
            "shipper": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{dep.function}",
            "sidecar": f"arn:aws:sts::{ACCOUNT}:assumed-role/{dep.task.physical['TaskRole']}/task",
        }
        if dep.efs:
            # The EFS task's role holds both policies the stack exports.
            self.identity["sidecar"].append({
                "name": "SidecarEfsPolicy",
                "policy": stack.resolve(res["SidecarEfsPolicy"]["Properties"]["PolicyDocument"])})
            self.identity["sweeper"] = [{"name": f"SweeperRole/{p['PolicyName']}", "policy": p["PolicyDocument"]}
                                        for p in stack.resolve(res["SweeperRole"]["Properties"]["Policies"])]
            self.principal["sweeper"] = \
                f"arn:aws:sts::{ACCOUNT}:assumed-role/{stack.physical['SweeperRole']}/{dep.sweeper}"
        self.resource_policies = {f"arn:aws:s3:::{dep.bucket}": {
            "name": "LogBucketPolicy", "policy": stack.bucket_policies[dep.bucket]}}
        self.resource_policies[dep.queue_arn] = {
            "name": "ChunkQueuePolicy", "policy": stack.resolve(res["ChunkQueuePolicy"]["Properties"]["PolicyDocument"])}

    def resource_policy(self, resource):
        for arn, policy in self.resource_policies.items():
            if resource == arn or resource.startswith(arn + "/"):
                return policy
        return None

    def case(self, who, action, resource, context):
        """An evaluator case: `who` is a principal of the stack, or a service
        principal (then only the resource policy applies)."""
        known = who in self.principal
        return {
            "principal": self.principal[who] if known else who,
            "action": action, "resource": resource, "context": context,
            "identityPolicies": self.identity[who] if known else [],
            "resourcePolicy": self.resource_policy(resource),
        }


def evaluate(cases):
    for i, c in enumerate(cases):
        c["id"] = i
    node = shutil.which("node")
    if node is None:
        fail("node is not installed (the evaluator is @cloud-copilot/iam-simulate)")
    if not os.path.isdir(os.path.join(ROOT, "node_modules/@cloud-copilot/iam-simulate")):
        fail("node_modules/@cloud-copilot/iam-simulate is missing: run `make node` (make test does it)")
    out = subprocess.run([node, NODE_EVALUATOR], input=json.dumps(cases), capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        fail(f"iam-evaluate.mjs: exit {out.returncode}: {out.stderr}")
    return json.loads(out.stdout)


def must_never(dep, recorded_by_who):
    """(who, action, resource, context, why) that must be denied."""
    b = f"arn:aws:s3:::{dep.bucket}"
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{dep.log_group}"
    other = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/another-service/files"
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{dep.stack.physical.get('CheckpointTable', 'none')}"
    dlq = dep.stack.attr("DeadLetterQueue", "Arn")
    tls = {"aws:SecureTransport": "true"}
    cases = [
        ("sidecar", "s3:GetObject", f"{b}/checkpoints/demo/0123.json", tls, "sidecar reads a checkpoint"),
        ("sidecar", "s3:PutObject", f"{b}/checkpoints/demo/0123.json", tls, "sidecar writes a checkpoint"),
        ("sidecar", "s3:GetObject", f"{b}/logs/demo/other-task/catalina.2026-11-24.log/0/1.gz", tls,
         "sidecar reads another task's object"),
        ("sidecar", "s3:ListBucket", b, {**tls, "s3:prefix": "logs/"}, "sidecar lists the bucket"),
        ("sidecar", "s3:DeleteObject", f"{b}/logs/demo/other-task/x.gz", tls, "sidecar deletes an object"),
        ("sidecar", "dynamodb:GetItem", table, tls, "sidecar reads the checkpoint table"),
        ("sidecar", "logs:PutLogEvents", f"{group}:log-stream:x", tls, "sidecar writes the file log group"),
        ("sidecar", "sqs:SendMessage", dep.queue_arn, tls, "sidecar sends to the queue"),
        ("shipper", "s3:DeleteObject", f"{b}/logs/demo/t/catalina.2026-11-24.log/0/1.gz", tls, "shipper deletes a chunk"),
        ("shipper", "s3:DeleteObject", f"{b}/checkpoints/demo/t.json", tls, "shipper deletes a checkpoint"),
        ("shipper", "s3:PutObject", f"{b}/logs/demo/t/x.gz", tls, "shipper writes a chunk"),
        ("shipper", "s3:PutBucketPolicy", b, tls, "shipper changes the bucket policy"),
        ("shipper", "logs:PutLogEvents", f"{other}:log-stream:x", tls, "shipper writes another log group"),
        ("shipper", "logs:CreateLogStream", f"{other}:log-stream:x", tls, "shipper creates a stream in another group"),
        ("shipper", "logs:CreateLogGroup", f"{other}", tls, "shipper creates a log group"),
        ("shipper", "logs:DeleteLogGroup", group, tls, "shipper deletes the file log group"),
        ("shipper", "logs:PutRetentionPolicy", group, tls, "shipper changes the group's retention"),
        ("shipper", "sqs:SendMessage", dep.queue_arn, tls, "shipper sends to its queue"),
        ("shipper", "sqs:ReceiveMessage", dlq, tls, "shipper reads the dead-letter queue"),
        ("shipper", "dynamodb:DeleteItem", table, tls, "shipper deletes a checkpoint item"),
        ("shipper", "dynamodb:Scan", table, tls, "shipper scans the table"),
        ("shipper", "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/another-table", tls,
         "shipper reads another table"),
        ("s3.amazonaws.com", "sqs:SendMessage", dep.queue_arn,
         {"aws:SourceArn": "arn:aws:s3:::another-bucket", "aws:SourceAccount": ACCOUNT},
         "another bucket notifies the queue"),
        ("events.amazonaws.com", "sqs:SendMessage", dep.queue_arn,
         {"aws:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/another-rule"}, "another rule sends to the queue"),
    ]
    if dep.efs:
        cases += efs_must_never(dep, tls)
    # Every request the binaries made, once more over plain HTTP.
    for who, action, resource, context in recorded_by_who:
        cases.append((who, action, resource, {**context, "aws:SecureTransport": "false"},
                      f"{who} {action} over plain HTTP"))
    return cases


def efs_must_never(dep, tls):
    b = f"arn:aws:s3:::{dep.bucket}"
    fs = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/{dep.efs['fs']}"
    other_fs = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-0123456789abcdef0"
    ap = {**tls, "elasticfilesystem:AccessPointArn": dep.efs["ap_arn"]}
    other_ap = {**tls, "elasticfilesystem:AccessPointArn":
                f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/fsap-0123456789abcdef0"}
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{dep.log_group}"
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{dep.stack.physical.get('CheckpointTable', 'none')}"
    segment = f"{b}/logs/demo/t/segment/000000000000001.gz"
    return [
        ("sweeper", "s3:GetObject", segment, tls, "sweeper reads a segment"),
        ("sweeper", "s3:DeleteObject", segment, tls, "sweeper deletes a segment"),
        ("sweeper", "s3:GetObject", f"{b}/checkpoints/demo/t.json", tls, "sweeper reads a checkpoint"),
        ("sweeper", "s3:PutObject", f"{b}/checkpoints/demo/t.json", tls, "sweeper writes a checkpoint"),
        ("sweeper", "s3:PutObject", "arn:aws:s3:::another-bucket/logs/demo/t/segment/000000000000001.gz", tls,
         "sweeper writes another bucket"),
        ("sweeper", "s3:ListBucket", b, {**tls, "s3:prefix": "logs/"}, "sweeper lists the bucket"),
        ("sweeper", "dynamodb:GetItem", table, tls, "sweeper reads the checkpoint table"),
        ("sweeper", "logs:PutLogEvents", f"{group}:log-stream:x", tls, "sweeper writes the file log group"),
        ("sweeper", "sqs:SendMessage", dep.queue_arn, tls, "sweeper sends to the queue"),
        ("sweeper", "elasticfilesystem:ClientMount", fs, tls, "sweeper mounts EFS without the access point"),
        ("sweeper", "elasticfilesystem:ClientWrite", fs, other_ap, "sweeper writes through another access point"),
        ("sweeper", "elasticfilesystem:ClientRootAccess", fs, ap, "sweeper is root on EFS"),
        ("sweeper", "elasticfilesystem:ClientWrite", other_fs, ap, "sweeper writes another file system"),
        ("sweeper", "elasticfilesystem:ClientMount", fs, {**ap, "aws:SecureTransport": "false"},
         "sweeper mounts EFS without TLS"),
        ("sweeper", "ec2:CreateNetworkInterface", f"arn:aws:ec2:eu-west-1:{ACCOUNT}:network-interface/eni-0123", tls,
         "sweeper makes a network interface in another Region"),
        ("sweeper", "ec2:DeleteVpc", f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/vpc-0123", tls, "sweeper deletes a VPC"),
        ("sidecar", "elasticfilesystem:ClientMount", fs, tls, "EFS task mounts without the access point"),
        ("sidecar", "elasticfilesystem:ClientWrite", fs, other_ap, "EFS task writes through another access point"),
        ("sidecar", "elasticfilesystem:ClientRootAccess", fs, ap, "EFS task is root on EFS"),
        ("sidecar", "elasticfilesystem:ClientMount", fs, {**ap, "aws:SecureTransport": "false"},
         "EFS task mounts without TLS"),
        ("sidecar", "elasticfilesystem:ClientWrite", other_fs, ap, "EFS task writes another file system"),
    ]


def efs_must_allow_besides(dep):
    """What Lambda (the sweeper's VPC and file system, its log lines) and
    ECS (the task's EFS volume) do with the roles."""
    fs = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/{dep.efs['fs']}"
    tls = {"aws:SecureTransport": "true"}
    ap = {**tls, "elasticfilesystem:AccessPointArn": dep.efs["ap_arn"]}
    eni = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-0123456789abcdef0"
    group = dep.stack.physical["SweeperLogGroup"]
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:2026/11/24/[$LATEST]0123"
    return [
        ("sweeper", "elasticfilesystem:ClientMount", fs, ap, "Lambda mounts the access point"),
        ("sweeper", "elasticfilesystem:ClientWrite", fs, ap, "the sweeper's state, locks and deletions"),
        # CreateNetworkInterface is authorized on the interface, its subnet and its groups.
        ("sweeper", "ec2:CreateNetworkInterface", eni, tls, "Lambda creates the function's network interface"),
        ("sweeper", "ec2:CreateNetworkInterface", f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/{dep.efs['subnet']}", tls,
         "Lambda creates the network interface in the sweeper's subnet"),
        ("sweeper", "ec2:CreateNetworkInterface", f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/{dep.efs['sg']}",
         tls, "Lambda creates the network interface with the sweeper's group"),
        ("sweeper", "ec2:DescribeNetworkInterfaces", "*", tls, "Lambda reads the network interfaces"),
        ("sweeper", "ec2:DescribeSubnets", "*", tls, "Lambda reads the subnets"),
        ("sweeper", "ec2:DeleteNetworkInterface", eni, tls, "Lambda deletes the network interface"),
        ("sweeper", "ec2:AssignPrivateIpAddresses", eni, tls, "Lambda assigns addresses"),
        ("sweeper", "ec2:UnassignPrivateIpAddresses", eni, tls, "Lambda unassigns addresses"),
        ("sweeper", "logs:CreateLogStream", stream, tls, "Lambda creates the sweeper's log stream"),
        ("sweeper", "logs:PutLogEvents", stream, tls, "Lambda writes the sweeper's log lines"),
        ("sidecar", "elasticfilesystem:ClientMount", fs, ap, "ECS mounts the task's EFS volume"),
        ("sidecar", "elasticfilesystem:ClientWrite", fs, ap, "Tomcat and the sidecar write on EFS"),
    ]


def must_allow_besides(dep):
    """Requests made with the template's permissions that the binaries do not
    make: Lambda's own, and the trigger's delivery."""
    fn_group = dep.stack.physical["ShipperLogGroup"]
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{fn_group}:log-stream:2026/11/24/[$LATEST]0123"
    cases = [
        ("shipper", "logs:CreateLogStream", stream, "Lambda creates the function's log stream"),
        ("shipper", "logs:PutLogEvents", stream, "Lambda writes the function's log lines"),
        ("shipper", "sqs:ReceiveMessage", dep.queue_arn, "the event source mapping receives"),
        ("shipper", "sqs:DeleteMessage", dep.queue_arn, "the event source mapping deletes"),
        ("shipper", "sqs:GetQueueAttributes", dep.queue_arn, "the event source mapping reads the queue"),
        # Not a request of its own: S3 answers a GetObject of a missing chunk
        # (expired, or deleted by hand) with 404 only if the caller may list.
        ("shipper", "s3:ListBucket", f"arn:aws:s3:::{dep.bucket}", "S3's 404 for a missing chunk"),
    ]
    out = [(who, action, resource, {"aws:SecureTransport": "true"}, why) for who, action, resource, why in cases]
    if dep.stack.params["Trigger"] == "S3":
        out.append(("s3.amazonaws.com", "sqs:SendMessage", dep.queue_arn,
                    {"aws:SourceArn": f"arn:aws:s3:::{dep.bucket}", "aws:SourceAccount": ACCOUNT},
                    "the bucket's notification"))
    else:
        out.append(("events.amazonaws.com", "sqs:SendMessage", dep.queue_arn,
                    {"aws:SourceArn": dep.stack.attr("ChunkRule", "Arn")}, "the rule's delivery"))
    if dep.efs:
        out += efs_must_allow_besides(dep)
    return out


# Request kinds the scenario must show (a check on the scenario itself: a
# path that stopped running would leave its permissions unproven).
EXPECTED_KINDS = {
    ("sidecar", "s3:PutObject", "logs/"),
    ("shipper", "s3:GetObject", "logs/"),
    ("shipper", "logs:CreateLogStream", "file log group"),
    ("shipper", "logs:PutLogEvents", "file log group"),
    ("shipper", "sqs:ReceiveMessage", "queue"),
    ("shipper", "sqs:DeleteMessage", "queue"),
}
EXPECTED_BY_STORE = {
    "dynamodb": {("shipper", "dynamodb:GetItem", "table"), ("shipper", "dynamodb:PutItem", "table")},
    "s3": {("shipper", "s3:GetObject", "checkpoints/"), ("shipper", "s3:PutObject", "checkpoints/")},
}
# On the EFS stack the scenario runs the sidecar and the sweeper only.
EXPECTED_EFS = {("sidecar", "s3:PutObject", "logs/"), ("sweeper", "s3:PutObject", "logs/")}


def kind(dep, action, resource):
    """The resource's part of a request kind: a bucket prefix, the queue..."""
    b = f"arn:aws:s3:::{dep.bucket}"
    if resource.startswith(b + "/"):
        return resource[len(b) + 1:].split("/", 1)[0] + "/"
    if resource == b:
        return "bucket"
    groups = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    if resource.startswith(f"{groups}{dep.log_group}:") or resource == f"{groups}{dep.log_group}":
        return "file log group"
    if resource.startswith(f"{groups}{dep.stack.physical['ShipperLogGroup']}:"):
        return "function log group"
    if dep.efs and resource.startswith(f"{groups}{dep.stack.physical['SweeperLogGroup']}:"):
        return "function log group"
    if resource.startswith("arn:aws:elasticfilesystem:"):
        return "file system" if dep.efs and resource.endswith("/" + dep.efs["fs"]) else "another file system"
    if action.startswith("ec2:"):
        return "network interfaces"
    if resource.startswith(groups):
        return "another log group"
    if resource.startswith(f"arn:aws:sqs:{REGION}:{ACCOUNT}:") and "DeadLetterQueue" in resource:
        return "dead-letter queue"
    if resource == dep.queue_arn:
        return "queue"
    if resource.startswith(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"):
        return "table"
    return resource


def check(dep, recorded):
    pol = Policies(dep)
    failures, lines = [], []
    unique = {}
    for who, action, resource, context, what in recorded:
        unique.setdefault((who, action, resource, json.dumps({**context, "aws:SecureTransport": "true"},
                                                           sort_keys=True)), what)
    product = [(who, action, resource, json.loads(ctx)) for (who, action, resource, ctx) in unique]
    allow = [(w, a, r, c, f"recorded: {unique[(w, a, r, json.dumps(c, sort_keys=True))]}") for w, a, r, c in product]
    allow += must_allow_besides(dep)
    deny = must_never(dep, product)
    cases = [pol.case(w, a, r, c) for w, a, r, c, _ in allow + deny]
    results = evaluate(cases)
    kinds = {}
    for (who, action, resource, _ctx, why), res in zip(allow, results[:len(allow)]):
        if res["result"] != "Allowed":
            failures.append(f"DENIED but needed ({why}): {who} {action} {resource}: {res['result']} "
                            f"{res.get('error') or res['deniedBy']}")
        k = (who, action, kind(dep, action, resource))
        entry = kinds.setdefault(k, {"count": 0, "allowedBy": set(), "recorded": why.startswith("recorded")})
        entry["allowedBy"].update(res["allowedBy"])
    for who, action, resource, _ctx, _what in recorded:
        kinds[(who, action, kind(dep, action, resource))]["count"] += 1
    for (who, action, resource, _ctx, why), res in zip(deny, results[len(allow):]):
        if res["result"] == "Allowed" or res["result"] == "Error":
            failures.append(f"ALLOWED but must never be ({why}): {who} {action} {resource}: "
                            f"{res['result']} {res.get('error') or res['allowedBy']}")
    want = EXPECTED_EFS if dep.efs else EXPECTED_KINDS | EXPECTED_BY_STORE[dep.stack.params["CheckpointStore"]]
    seen = {k for k, v in kinds.items() if v["recorded"]}
    for k in sorted(want - seen):
        failures.append(f"the scenario made no {k[1]} on {k[2]} as the {k[0]}: the run did not cover it")
    for k, v in sorted(kinds.items(), key=lambda kv: (not kv[1]["recorded"], kv[0])):
        src = f"recorded x{v['count']}" if v["recorded"] else "besides"
        lines.append(f"  {src:12} {k[0]:20} {k[1]:24} {k[2]:18} allowed by {', '.join(sorted(v['allowedBy']))}")
    denied = []
    for (who, action, resource, _c, why), res in zip(deny, results[len(allow):]):
        line = (f"  {'denied':12} {who:20} {action:24} {kind(dep, action, resource):18} {why}: "
                f"{res['result']} by {', '.join(res['deniedBy']) or '(no Allow)'}")
        if line not in denied:
            denied.append(line)
    return failures, lines, denied


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shipper", required=True)
    ap.add_argument("--sidecar", required=True)
    ap.add_argument("--sweeper", required=True)
    ap.add_argument("--template", default=os.path.join(ROOT, "template.yaml"))
    ap.add_argument("--report")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="logdrop-permissions-")
    try:
        recording = os.path.join(work, "recording.jsonl")
        _server, endpoint = start_moto(record_to=recording)
        upload_code_stub(endpoint)
        deployments = [
            Deployment(endpoint, args.template, "ddb-s3", {"LogGroupName": "/ecs/ddb-s3/files"}),
            Deployment(endpoint, args.template, "s3-eventbridge", {
                "CheckpointStore": "s3", "Trigger": "EventBridge", "LogGroupName": "/ecs/s3-eventbridge/files"}),
            Deployment(endpoint, args.template, "efs-sweeper", {"LogGroupName": "/ecs/efs-sweeper/files"},
                       efs=efs_network(endpoint)),
        ]
        principals = {SIDECAR_KEY: "sidecar", SHIPPER_KEY: "shipper", SWEEPER_KEY: "sweeper"}
        failures, report = [], []
        for i, dep in enumerate(deployments):
            requests.post(f"{endpoint}/moto-api/recorder/reset-recording")
            requests.post(f"{endpoint}/moto-api/recorder/start-recording")
            if dep.efs:
                efs_scenario(dep, args.sidecar, args.sweeper, work, f"{i + 1:032x}")
            else:
                scenario(dep, args.shipper, args.sidecar, work, f"{i + 1:032x}")
            requests.post(f"{endpoint}/moto-api/recorder/stop-recording")
            recorded = recorded_requests(recording, principals)
            f, lines, denied = check(dep, recorded)
            p = dep.stack.params
            efs = ", EFS drops: sidecar on EFS and sweeper" if dep.efs else ""
            report.append(f"{dep.stack.name} (CheckpointStore={p['CheckpointStore']}, Trigger={p['Trigger']}{efs}): "
                          f"{len(recorded)} requests recorded")
            report += lines + denied
            failures += [f"{dep.stack.name}: {x}" for x in f]
        text = "\n".join(report)
        print(text)
        if args.report:
            with open(args.report, "w") as f:
                f.write(text + "\n")
        if failures:
            fail("\n" + "\n".join(failures))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
