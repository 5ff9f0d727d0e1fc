#!/usr/bin/env python3
"""Creates template.yaml (SAM-transformed) in moto's CloudFormation for every
combination of CheckpointStore, Trigger and ExistingLogGroup, and
examples/ecs-task.yaml against the default one, then checks what was created:

  - every output, and every export under its documented name, is there and
    names a resource that exists;
  - the queue redrives to the dead-letter queue, and new chunks reach it: an
    object under logs/ ending .gz (and nothing else) becomes one message, through
    the bucket's notification (Trigger=S3) or the EventBridge rule
    (Trigger=EventBridge), whose queue policy statement names that bucket or rule;
  - the event source mapping connects the queue to the function, which runs
    under the shipper role with the environment the template documents;
  - the file log group is created with its retention, or adopted untouched;
  - the checkpoint table exists only for CheckpointStore=dynamodb;
  - the task definition imports the bucket and the sidecar policy;
  - with the EFS parameters set (a VPC, subnet, security group, file system
    and access point created in moto first), the sweeper: its function's
    environment, VPC, file system, schedule rule targeting it, log group and
    role statements, and the tasks' EFS policy; examples/ecs-task-efs.yaml
    beside it (EFS volume through the access point, the hand-off volume, the
    sidecar's EFS variables, Tomcat's command wrapper). Without them no
    sweeper resource exists.

Resources moto's CloudFormation does not implement (the bucket policy, the
queue policy, the alarms) are resolved from the template with the stack's
names and put through their APIs instead (scripts/cfn_local.py).

Usage: check-stack.py [TEMPLATE [TASK_TEMPLATE [EFS_TASK_TEMPLATE]]] (default: the repo's);
prints one line per stack, exits 1 on the first failure.
"""

import itertools
import json
import os
import re
import sys
import time
from urllib.parse import unquote_plus

from cfn_local import (ROOT, Failure, client, deploy, efs_network, fail, policy_document, run, start_moto,
                       upload_code_stub)

TEMPLATE = os.path.join(ROOT, "template.yaml")
TASK_TEMPLATE = os.path.join(ROOT, "examples/ecs-task.yaml")
EFS_TASK_TEMPLATE = os.path.join(ROOT, "examples/ecs-task-efs.yaml")
# Resources of the EFS drops (condition EfsDrops); the SAM-generated schedule
# rule and its permission are named after the function and its event.
SWEEPER_RESOURCES = ("SidecarEfsPolicy", "SweeperLogGroup", "SweeperRole", "SweeperFunction",
                     "SweeperFunctionSweep", "SweeperFunctionSweepPermission")
MOUNT = "/mnt/logdrop"
ALARMS = ("DeadLetterAlarm", "QueueAgeAlarm", "FailedRecordsAlarm", "RejectedEventsAlarm", "LagAlarm",
          "SidecarStalledAlarm")


def expect(what, got, want):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


def check_outputs(stack):
    cfn = client(stack.endpoint, "cloudformation")
    exports = {e["Name"]: e.get("Value") for e in cfn.list_exports()["Exports"]}
    for key, out in stack.template.get("Outputs", {}).items():
        if "Condition" in out and not stack.condition(out["Condition"]):
            # (moto still lists such an output's export, empty: not checked.)
            if key in stack.outputs:
                fail(f"{stack.name}: output {key} exists though its condition {out['Condition']} is false")
            continue
        if key not in stack.outputs:
            fail(f"{stack.name}: output {key} missing (have {sorted(stack.outputs)})")
        value = stack.outputs[key]["OutputValue"]
        expect(f"{stack.name}: output {key}", value, str(stack.resolve(out["Value"])))
        if "Export" in out:
            name = stack.resolve(out["Export"]["Name"])
            expect(f"{stack.name}: export {name}", exports.get(name), value)
    extra = set(stack.outputs) - set(stack.template.get("Outputs", {}))
    if extra:
        fail(f"{stack.name}: outputs not in the template: {extra}")


def expect_role_policies(stack, logical):
    """The role's policies as moto's CloudFormation resolved them equal the
    ones resolved here (which check-permissions.py evaluates), but for two
    differences of moto's: its LogGroup.Arn lacks CloudFormation's ":*", and
    an AWS::NoValue in a list stays there as null."""
    iam = client(stack.endpoint, "iam")
    role = stack.physical[logical]
    resolved = stack.resolve(stack.template["Resources"][logical]["Properties"]["Policies"])
    for pol in resolved:
        got = policy_document(iam.get_role_policy(RoleName=role, PolicyName=pol["PolicyName"])["PolicyDocument"])
        got = json.loads(re.sub(r'(:log-group:[^":*]+)"', r'\1:*"', json.dumps(got)))
        got["Statement"] = [s for s in got["Statement"] if s is not None]
        expect(f"{stack.name}: {logical} policy {pol['PolicyName']}", got, pol["PolicyDocument"])
    return resolved


def managed_policy(stack, logical):
    """The managed policy's document as created, checked against the template's."""
    iam = client(stack.endpoint, "iam")
    arn = stack.physical[logical]
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    doc = policy_document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])
    expect(f"{stack.name}: {logical} document", doc,
           stack.resolve(stack.template["Resources"][logical]["Properties"]["PolicyDocument"]))
    return doc


def check_logdrop(stack, pre_existing_retention):
    ep, name, p, o = stack.endpoint, stack.name, stack.params, stack.outputs
    s3, sqs, lam = client(ep, "s3"), client(ep, "sqs"), client(ep, "lambda")
    check_outputs(stack)

    bucket = o["BucketName"]["OutputValue"]
    expect(f"{name}: BucketName", bucket, stack.physical["LogBucket"])
    s3.head_bucket(Bucket=bucket)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    policy_arn = o["SidecarPolicyArn"]["OutputValue"]
    iam = client(ep, "iam")
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]
    doc = policy_document(doc)
    expect(f"{name}: SidecarPolicy document", doc,
           stack.resolve(stack.template["Resources"]["SidecarPolicy"]["Properties"]["PolicyDocument"]))

    expect_role_policies(stack, "ShipperRole")

    queue_url = o["ChunkQueueUrl"]["OutputValue"]
    dlq_url = o["DeadLetterQueueUrl"]["OutputValue"]
    dlq_arn = o["DeadLetterQueueArn"]["OutputValue"]
    expect(f"{name}: DeadLetterQueueArn", sqs.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"], dlq_arn)
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    queue_arn = attrs["QueueArn"]
    expect(f"{name}: redrive policy", json.loads(attrs["RedrivePolicy"]),
           {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})

    fn = o["ShipperFunctionName"]["OutputValue"]
    conf = lam.get_function_configuration(FunctionName=fn)
    expect(f"{name}: function role", conf["Role"], stack.attr("ShipperRole", "Arn"))
    if int(attrs["VisibilityTimeout"]) < 6 * conf["Timeout"]:
        fail(f"{name}: queue visibility {attrs['VisibilityTimeout']} s under six times the timeout {conf['Timeout']} s")
    # moto keeps a number from a Ref as a number; Lambda keeps strings.
    env = {k: str(v) for k, v in conf.get("Environment", {}).get("Variables", {}).items()}
    expect(f"{name}: LOGDROP_LOG_GROUP", env.get("LOGDROP_LOG_GROUP"), p["LogGroupName"])
    expect(f"{name}: LOGDROP_CREATE_LOG_GROUP", env.get("LOGDROP_CREATE_LOG_GROUP"), "false")
    want_table = stack.physical.get("CheckpointTable") if p["CheckpointStore"] == "dynamodb" else None
    if p["CheckpointStore"] == "dynamodb":
        table = client(ep, "dynamodb").describe_table(TableName=want_table)["Table"]
        expect(f"{name}: table key", table["KeySchema"], [{"AttributeName": "pk", "KeyType": "HASH"}])
    elif "CheckpointTable" in stack.physical:
        fail(f"{name}: a checkpoint table with CheckpointStore=s3")
    expect(f"{name}: LOGDROP_CHECKPOINT_TABLE", env.get("LOGDROP_CHECKPOINT_TABLE"), want_table)

    logs = client(ep, "logs")
    groups = {g["logGroupName"]: g for g in logs.describe_log_groups()["logGroups"]}
    group = groups.get(p["LogGroupName"])
    if group is None:
        fail(f"{name}: file log group {p['LogGroupName']} does not exist")
    if p["ExistingLogGroup"] == "no":
        expect(f"{name}: FileLogGroup", stack.physical.get("FileLogGroup"), p["LogGroupName"])
        expect(f"{name}: retention", group.get("retentionInDays"), int(p["RetentionDays"]))
        expect(f"{name}: LOGDROP_RETENTION_DAYS", env.get("LOGDROP_RETENTION_DAYS"), p["RetentionDays"])
    else:
        if "FileLogGroup" in stack.physical:
            fail(f"{name}: ExistingLogGroup=yes still creates FileLogGroup")
        expect(f"{name}: adopted group's retention", group.get("retentionInDays"), pre_existing_retention)
        expect(f"{name}: LOGDROP_RETENTION_DAYS", env.get("LOGDROP_RETENTION_DAYS"), None)
    if stack.physical["ShipperLogGroup"] not in groups:
        fail(f"{name}: the shipper's log group does not exist")

    mappings = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    # ReportBatchItemFailures: the shipper fails single records, not the batch.
    expect(f"{name}: event source mappings", [
        (m["EventSourceArn"], m["BatchSize"], m.get("MaximumBatchingWindowInSeconds"), m.get("FunctionResponseTypes"))
        for m in mappings], [(queue_arn, 10, 5, ["ReportBatchItemFailures"])])
    # moto's Lambda drops LoggingConfig: the function's log group as the
    # template resolves it is the stack's ShipperLogGroup (which the role may write).
    logging_config = stack.resolve(stack.template["Resources"]["ShipperFunction"]["Properties"]["LoggingConfig"])
    expect(f"{name}: function's log group", logging_config["LogGroup"], stack.physical["ShipperLogGroup"])
    expect(f"{name}: JSON log lines", logging_config["LogFormat"], "JSON")

    policy = json.loads(attrs.get("Policy") or sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    senders = [(s["Principal"], s["Action"], s["Condition"]) for s in policy["Statement"] if s["Effect"] == "Allow"]
    notif = s3.get_bucket_notification_configuration(Bucket=bucket)
    if p["Trigger"] == "S3":
        expect(f"{name}: queue policy senders", senders, [(
            {"Service": "s3.amazonaws.com"}, "sqs:SendMessage",
            {"ArnLike": {"aws:SourceArn": bucket_arn}, "StringEquals": {"aws:SourceAccount": "123456789012"}})])
        qc = notif.get("QueueConfigurations", [])
        expect(f"{name}: notification queues", [c["QueueArn"] for c in qc], [queue_arn])
        expect(f"{name}: notification events", qc[0]["Events"], ["s3:ObjectCreated:*"])
        rules = {r["Name"].lower(): r["Value"] for r in qc[0]["Filter"]["Key"]["FilterRules"]}
        expect(f"{name}: notification filter", rules, {"prefix": "logs/", "suffix": ".gz"})
        if "EventBridgeConfiguration" in notif or "ChunkRule" in stack.physical:
            fail(f"{name}: Trigger=S3 also sends to EventBridge")
    else:
        rule_arn = stack.attr("ChunkRule", "Arn")
        expect(f"{name}: queue policy senders", senders, [(
            {"Service": "events.amazonaws.com"}, "sqs:SendMessage", {"ArnEquals": {"aws:SourceArn": rule_arn}})])
        # (moto's GetBucketNotificationConfiguration leaves out the
        # EventBridgeConfiguration it keeps: the delivery below shows it.)
        if notif.get("QueueConfigurations"):
            fail(f"{name}: Trigger=EventBridge also notifies {notif['QueueConfigurations']}")
        events = client(ep, "events")
        rule = stack.physical["ChunkRule"]
        targets = events.list_targets_by_rule(Rule=rule)["Targets"]
        expect(f"{name}: rule targets", [t["Arn"] for t in targets], [queue_arn])
        pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
        expect(f"{name}: rule's bucket", pattern["detail"]["bucket"]["name"], [bucket])

    # Delivery: of these objects only logs/…gz is a chunk.
    task = f"logs/c/{name}"
    for key in ("checkpoints/t.json", f"{task}/x.txt", f"{task}/0001.gz"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    keys = []
    for m in got:
        body = json.loads(m["Body"])
        if body.get("Event") == "s3:TestEvent":
            continue  # S3 sends one when the notification is set
        if p["Trigger"] == "S3":
            # URL-encoded as in S3 events (moto encodes "/" too).
            keys += [(r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"])) for r in body["Records"]]
        else:
            expect(f"{name}: event detail-type", body["detail-type"], "Object Created")
            keys.append((body["detail"]["bucket"]["name"], body["detail"]["object"]["key"]))
    expect(f"{name}: chunks delivered to the queue", keys, [(bucket, f"{task}/0001.gz")])

    cw = client(ep, "cloudwatch")
    alarms = cw.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"]
    expect(f"{name}: alarms", sorted(a["AlarmName"][len(name) + 1:] for a in alarms), sorted(ALARMS))
    function = stack.physical["ShipperFunction"]
    dims = sorted(d["Value"] for a in alarms for d in a["Dimensions"])
    expect(f"{name}: alarms' queues and function", dims,
           sorted([queue_arn.split(":")[-1], dlq_arn.split(":")[-1], function]))
    # The metric-math alarms name the function in each query (or every cluster).
    for a in alarms:
        for m in a.get("Metrics", []):
            metric = m.get("MetricStat", {}).get("Metric")
            if metric:
                expect(f"{name}: {a['AlarmName']} {m['Id']}", (metric["Namespace"], metric["Dimensions"]),
                       ("logdrop", [{"Name": "Function", "Value": function}]))
    if not stack.condition("EfsDrops"):
        made = [r for r in SWEEPER_RESOURCES if stack.physical.get(r)]
        if made:
            fail(f"{name}: without the EFS parameters the stack still creates {made}")
    board = json.loads(cw.get_dashboard(DashboardName=f"{name}-logdrop")["DashboardBody"])
    named = json.dumps(board)
    expect(f"{name}: dashboard widgets", len(board["widgets"]), 6)
    for want in (function, queue_arn.split(":")[-1], dlq_arn.split(":")[-1]):
        if want not in named:
            fail(f"{name}: the dashboard does not name {want}")


def statement(doc, sid, where):
    found = [s for s in doc["Statement"] if s.get("Sid") == sid]
    if len(found) != 1:
        fail(f"{where}: {len(found)} statements {sid}, want 1")
    return found[0]


def check_sweeper(stack, efs):
    """The sweeper of a stack with the EFS parameters set; `efs` is what was
    created for it (subnet, security group, file system, access point)."""
    ep, name, p, o = stack.endpoint, stack.name, stack.params, stack.outputs
    lam, logs = client(ep, "lambda"), client(ep, "logs")
    bucket = o["BucketName"]["OutputValue"]
    fs_arn = f"arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/{efs['fs']}"
    expect(f"{name}: EfsFileSystemId output", o["EfsFileSystemId"]["OutputValue"], efs["fs"])
    expect(f"{name}: EfsAccessPointId output", o["EfsAccessPointId"]["OutputValue"], efs["ap_id"])
    ap = client(ep, "efs").describe_access_points(AccessPointId=efs["ap_id"])["AccessPoints"][0]
    expect(f"{name}: the access point's file system", ap["FileSystemId"], p["EfsFileSystemId"])

    fn = o["SweeperFunctionName"]["OutputValue"]
    expect(f"{name}: SweeperFunctionName", fn, stack.physical["SweeperFunction"])
    conf = lam.get_function_configuration(FunctionName=fn)
    expect(f"{name}: sweeper role", conf["Role"], stack.attr("SweeperRole", "Arn"))
    env = {k: str(v) for k, v in conf.get("Environment", {}).get("Variables", {}).items()}
    # The sidecar's key prefix is its default, which the bucket's lifecycle
    # and the queue's filter (logs/) are written for.
    expect(f"{name}: sweeper environment", env,
           {"LOGDROP_BUCKET": bucket, "LOGDROP_KEY_PREFIX": "logs", "LOGDROP_EFS_ROOT": MOUNT})
    vpc = conf.get("VpcConfig") or {}
    expect(f"{name}: sweeper subnets", vpc.get("SubnetIds"), [efs["subnet"]])
    expect(f"{name}: sweeper security groups", vpc.get("SecurityGroupIds"), [efs["sg"]])
    if conf["Timeout"] > 900 or conf["MemorySize"] > 256:
        fail(f"{name}: sweeper sized {conf['MemorySize']} MB / {conf['Timeout']} s, above the shipper's")
    # moto's Lambda drops FileSystemConfigs, LoggingConfig and Architectures:
    # they are read from the template as resolved for this stack.
    props = stack.resolve(stack.template["Resources"]["SweeperFunction"]["Properties"])
    expect(f"{name}: sweeper file systems", props.get("FileSystemConfigs"),
           [{"Arn": efs["ap_arn"], "LocalMountPath": MOUNT}])
    expect(f"{name}: sweeper runtime", (props["Runtime"], props["Architectures"]), ("provided.al2023", ["arm64"]))
    expect(f"{name}: sweeper binary",
           stack.template["Resources"]["SweeperFunction"].get("Metadata", {}).get("BuildProperties", {}).get("Binary"),
           "sweeper")
    expect(f"{name}: sweeper's log group", props["LoggingConfig"]["LogGroup"], stack.physical["SweeperLogGroup"])
    groups = {g["logGroupName"]: g for g in logs.describe_log_groups()["logGroups"]}
    group = groups.get(stack.physical["SweeperLogGroup"])
    if group is None:
        fail(f"{name}: the sweeper's log group does not exist")
    expect(f"{name}: sweeper log retention", group.get("retentionInDays"),
           groups[stack.physical["ShipperLogGroup"]].get("retentionInDays"))

    # The schedule: a rule at SweepSchedule whose one target is the function,
    # and the function's permission for that rule alone.
    events = client(ep, "events")
    rule = stack.physical["SweeperFunctionSweep"]
    desc = events.describe_rule(Name=rule)
    expect(f"{name}: sweep schedule", (desc.get("ScheduleExpression"), desc["State"]), (p["SweepSchedule"], "ENABLED"))
    expect(f"{name}: schedule targets", [t["Arn"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]],
           [conf["FunctionArn"]])
    policy = json.loads(lam.get_policy(FunctionName=fn)["Policy"])
    expect(f"{name}: who may invoke the sweeper", [
        (s["Principal"], s["Action"], s.get("Condition")) for s in policy["Statement"]],
        [({"Service": "events.amazonaws.com"}, "lambda:InvokeFunction", {"ArnLike": {"AWS:SourceArn": desc["Arn"]}})])

    # The role: PutObject under logs/ only; EFS through the access point;
    # the network interfaces; its own log group; no plain HTTP.
    (pol,) = expect_role_policies(stack, "SweeperRole")
    doc, where = pol["PolicyDocument"], f"{name}: SweeperRole"
    expect(f"{where} statements", sorted(s.get("Sid") for s in doc["Statement"]), sorted([
        "UploadSegments", "MountThroughAccessPoint", "DescribeNetworkInterfaces", "ManageNetworkInterfaces",
        "WriteOwnLog", "TlsOnly"]))
    s = statement(doc, "UploadSegments", where)
    expect(f"{where} UploadSegments", (s["Effect"], s["Action"], s["Resource"]),
           ("Allow", "s3:PutObject", f"arn:aws:s3:::{bucket}/logs/*"))
    s = statement(doc, "MountThroughAccessPoint", where)
    expect(f"{where} MountThroughAccessPoint", (s["Action"], s["Resource"], s["Condition"]), (
        ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"], fs_arn,
        {"StringEquals": {"elasticfilesystem:AccessPointArn": efs["ap_arn"]}}))
    s = statement(doc, "WriteOwnLog", where)
    expect(f"{where} WriteOwnLog", s["Resource"], stack.attr("SweeperLogGroup", "Arn"))
    s = statement(doc, "TlsOnly", where)
    expect(f"{where} TlsOnly", (s["Effect"], s["Action"], s["Resource"], s["Condition"]),
           ("Deny", "*", "*", {"Bool": {"aws:SecureTransport": "false"}}))

    # The tasks' policy: the same file system through the same access point.
    doc = managed_policy(stack, "SidecarEfsPolicy")
    expect(f"{name}: SidecarEfsPolicyArn", o["SidecarEfsPolicyArn"]["OutputValue"], stack.physical["SidecarEfsPolicy"])
    s = statement(doc, "MountThroughAccessPoint", f"{name}: SidecarEfsPolicy")
    expect(f"{name}: SidecarEfsPolicy statement", (s["Effect"], s["Action"], s["Resource"], s["Condition"]), (
        "Allow", ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"], fs_arn,
        {"StringEquals": {"elasticfilesystem:AccessPointArn": efs["ap_arn"]}, "Bool": {"aws:SecureTransport": "true"}}))


def check_efs_task_stack(stack, logdrop, efs):
    """examples/ecs-task-efs.yaml: both policies, the EFS volume through the
    access point with TLS and IAM, the hand-off volume, and the containers
    wired as the README's "Pointing Tomcat at its directory" shows."""
    ep, name = stack.endpoint, stack.name
    check_outputs(stack)
    iam = client(ep, "iam")
    attached = sorted(a["PolicyArn"] for a in iam.list_attached_role_policies(
        RoleName=stack.physical["TaskRole"])["AttachedPolicies"])
    expect(f"{name}: task role policies", attached, sorted(
        [logdrop.outputs["SidecarPolicyArn"]["OutputValue"], logdrop.outputs["SidecarEfsPolicyArn"]["OutputValue"]]))
    td = client(ep, "ecs").describe_task_definition(
        taskDefinition=stack.outputs["TaskDefinitionArn"]["OutputValue"])["taskDefinition"]
    # moto's ECS keeps a volume's name only: the configuration is read from
    # the template, its imports resolved against the logdrop stack.
    volumes = stack.resolve(stack.template["Resources"]["TaskDefinition"]["Properties"]["Volumes"])
    expect(f"{name}: volumes", [v["name"] for v in td["volumes"]], [v["Name"] for v in volumes])
    expect(f"{name}: EFS volume", volumes[0], {"Name": "efs", "EFSVolumeConfiguration": {
        "FilesystemId": efs["fs"], "TransitEncryption": "ENABLED",
        "AuthorizationConfig": {"AccessPointId": efs["ap_id"], "IAM": "ENABLED"}}})
    expect(f"{name}: hand-off volume", volumes[1], {"Name": "handoff"})
    containers = {c["name"]: c for c in td["containerDefinitions"]}
    side, tomcat = containers["logdrop"], containers["tomcat"]
    env = {e["name"]: e["value"] for e in side.get("environment", [])}
    expect(f"{name}: sidecar environment", env, {
        "LOGDROP_BUCKET": logdrop.outputs["BucketName"]["OutputValue"], "LOGDROP_SHUTDOWN_GRACE": "25s",
        "LOGDROP_EFS_ROOT": "/efs", "LOGDROP_EFS_LINK": "/handoff/logs"})
    mounts = [{"sourceVolume": "efs", "containerPath": "/efs"}, {"sourceVolume": "handoff", "containerPath": "/handoff"}]
    for c in (side, tomcat):
        expect(f"{name}: {c['name']} mounts", c.get("mountPoints"), mounts)
    # Both essential on EFS: a task whose sidecar died must not go on
    # writing into a directory the sweeper takes for a dead task's.
    expect(f"{name}: containers essential", {n: c.get("essential") for n, c in containers.items()},
           {"logdrop": True, "tomcat": True})
    expect(f"{name}: tomcat waits for the sidecar", tomcat.get("dependsOn"),
           [{"containerName": "logdrop", "condition": "START"}])
    expect(f"{name}: tomcat's command", tomcat.get("command"), ["sh", "-c", (
        "until [ -e /handoff/logs ]; do sleep 0.2; done; rm -rf /usr/local/tomcat/logs && "
        "ln -s /handoff/logs /usr/local/tomcat/logs && exec catalina.sh run")])
    groups = {g["logGroupName"] for g in client(ep, "logs").describe_log_groups()["logGroups"]}
    for c in containers.values():
        if c["logConfiguration"]["options"]["awslogs-group"] not in groups:
            fail(f"{name}: container {c['name']} logs to a group that does not exist")


def check_task_stack(stack, logdrop):
    ep = stack.endpoint
    check_outputs(stack)
    ecs, iam = client(ep, "ecs"), client(ep, "iam")
    arn = stack.outputs["TaskDefinitionArn"]["OutputValue"]
    td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    # moto's CloudFormation registers the family, containers, volumes and
    # memory only: the roles are checked as IAM resources of the stack, the
    # rest by check-template.py (the ECS API model).
    role = stack.physical["TaskRole"]
    attached = [a["PolicyArn"] for a in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]]
    expect(f"{stack.name}: task role policies", attached, [logdrop.outputs["SidecarPolicyArn"]["OutputValue"]])
    iam.get_role(RoleName=stack.physical["ExecutionRole"])
    containers = {c["name"]: c for c in td["containerDefinitions"]}
    env = {e["name"]: e["value"] for e in containers["logdrop"].get("environment", [])}
    expect(f"{stack.name}: sidecar LOGDROP_BUCKET", env.get("LOGDROP_BUCKET"), logdrop.outputs["BucketName"]["OutputValue"])
    groups = {g["logGroupName"] for g in client(ep, "logs").describe_log_groups()["logGroups"]}
    for c in containers.values():
        group = c["logConfiguration"]["options"]["awslogs-group"]
        if group not in groups:
            fail(f"{stack.name}: container {c['name']} logs to {group}, which does not exist")


def main():
    template = sys.argv[1] if len(sys.argv) > 1 else TEMPLATE
    task_template = sys.argv[2] if len(sys.argv) > 2 else TASK_TEMPLATE
    efs_task_template = sys.argv[3] if len(sys.argv) > 3 else EFS_TASK_TEMPLATE
    started = time.monotonic()
    _server, endpoint = start_moto()
    upload_code_stub(endpoint)
    stacks = []
    for i, (store, trigger, existing) in enumerate(itertools.product(
            ["dynamodb", "s3"], ["S3", "EventBridge"], ["no", "yes"])):
        name = f"logdrop{i}"
        params = {"CheckpointStore": store, "Trigger": trigger, "ExistingLogGroup": existing,
                  "LogGroupName": f"/ecs/{name}/files"}
        retention = None
        if existing == "yes":
            retention = 7
            logs = client(endpoint, "logs")
            logs.create_log_group(logGroupName=params["LogGroupName"])
            logs.put_retention_policy(logGroupName=params["LogGroupName"], retentionInDays=retention)
        try:
            stack = deploy(endpoint, name, template, params)
            check_logdrop(stack, retention)
        except Failure as e:
            fail(f"{params}: {e}")
        stacks.append(stack)
        print(f"CREATE_COMPLETE and wired: {name} {' '.join(f'{k}={v}' for k, v in params.items())}")
    task = deploy(endpoint, "tomcat-task", task_template, {"LogdropStack": stacks[0].name})
    check_task_stack(task, stacks[0])
    print(f"CREATE_COMPLETE and wired: tomcat-task (examples/ecs-task.yaml, LogdropStack={stacks[0].name})")

    # EFS drops: the defaults for the rest, the sweeper every two minutes.
    efs = efs_network(endpoint)
    params = {**efs["params"], "SweepSchedule": "rate(2 minutes)", "LogGroupName": "/ecs/logdrop-efs/files"}
    try:
        stack = deploy(endpoint, "logdrop-efs", template, params)
        check_logdrop(stack, None)
        check_sweeper(stack, efs)
    except Failure as e:
        fail(f"{params}: {e}")
    print(f"CREATE_COMPLETE and wired: logdrop-efs with the sweeper "
          f"{' '.join(f'{k}={v}' for k, v in params.items())}")
    efs_task = deploy(endpoint, "tomcat-task-efs", efs_task_template, {"LogdropStack": stack.name})
    check_efs_task_stack(efs_task, stack, efs)
    print(f"CREATE_COMPLETE and wired: tomcat-task-efs (examples/ecs-task-efs.yaml, LogdropStack={stack.name})")
    print(f"{len(stacks) + 3} stacks checked in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    run(main)
