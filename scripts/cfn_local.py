"""Shared by scripts/check-stack.py and scripts/check-permissions.py: a moto
server of their own on a free loopback port, SAM's transform of template.yaml
(offline: the function has its own role, so no managed policy is looked up),
stacks created in moto's CloudFormation, and the resources moto's
CloudFormation does not implement (the bucket policy, the queue policy, the
alarms) resolved from the template with the stack's real names and put
through their services' APIs instead.
"""

import ast
import io
import json
import logging
import os
import sys
import warnings
import zipfile

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402
import botocore.config  # noqa: E402
from cfnlint.decode import decode  # noqa: E402
from samtranslator.translator.transform import transform as sam_transform  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE_BUCKET = "logdrop-test-code"
# Requests this script makes itself carry this key, the binaries' others.
SETUP_KEY = "AKIASETUPSETUPSETUP0"
# Created by the stack but not by moto's CloudFormation (it logs "No Moto
# CloudFormation support" and marks them complete without creating anything).
NOT_IN_MOTO_CFN = ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::CloudWatch::Alarm")
# Properties that moto's CloudFormation ignores, put through the APIs: of
# AWS::IAM::Role, ManagedPolicyArns; of AWS::S3::Bucket, these.
BUCKET_PROPS_NOT_IN_MOTO_CFN = ("NotificationConfiguration", "LifecycleConfiguration",
                                "PublicAccessBlockConfiguration")


class Failure(Exception):
    """A check failed; the message says which and why."""


def fail(msg):
    raise Failure(msg)


def start_moto(record_to=None):
    """A moto server in this process on a free loopback port; its endpoint.
    With record_to, moto's recorder is set up to append requests there (it
    starts recording when told to: see Recorder in moto_api)."""
    if record_to:
        os.environ["MOTO_RECORDER_FILEPATH"] = record_to
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    # Quiet: one line per request, and a warning per resource type that
    # moto's CloudFormation skips (NOT_IN_MOTO_CFN, handled here).
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*not supported by moto's CloudFormation")

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def client(endpoint, service, key=SETUP_KEY):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def policy_document(doc):
    """A policy document as moto's IAM returns it: JSON, or (for what its
    CloudFormation stored) the Python repr of the template's mapping."""
    if not isinstance(doc, str):
        return doc
    try:
        return json.loads(doc)
    except json.JSONDecodeError:
        return ast.literal_eval(doc)


def read_template(path):
    template, matches = decode(path)
    if template is None:
        fail(f"{path}: cannot be read: {matches}")
    return template


class _NoManagedPolicies:
    def load(self):
        return {}


def transformed(path):
    """The SAM template as CloudFormation creates it; the function's code is
    a stub object in CODE_BUCKET (upload_code_stub puts it there)."""
    template = read_template(path)
    for res in template.get("Resources", {}).values():
        if res.get("Type") == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = f"s3://{CODE_BUCKET}/bootstrap.zip"
    if "Transform" not in template:
        return template
    return sam_transform(template, {}, _NoManagedPolicies())


def upload_code_stub(endpoint):
    s3 = client(endpoint, "s3")
    s3.create_bucket(Bucket=CODE_BUCKET)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket=CODE_BUCKET, Key="bootstrap.zip", Body=buf.getvalue())


class Stack:
    """A created stack: its template (transformed), parameters (defaults
    applied), physical ids and outputs."""

    def __init__(self, endpoint, name, template, params):
        self.endpoint = endpoint
        self.name = name
        self.template = template
        self.params = {k: str(v.get("Default")) for k, v in template.get("Parameters", {}).items()
                       if "Default" in v}
        self.params.update(params)
        cfn = client(endpoint, "cloudformation")
        cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        desc = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if desc["StackStatus"] != "CREATE_COMPLETE":
            events = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                      for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
                      if "FAILED" in e["ResourceStatus"]]
            fail(f"stack {name}: {desc['StackStatus']} {desc.get('StackStatusReason')}; {events}")
        self.id = desc["StackId"]
        self.outputs = {o["OutputKey"]: o for o in desc.get("Outputs", [])}
        self.physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                         for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]}
        self.conditions = {}
        self._attrs = {}
        self.bucket_policies = {}
        # Nothing runs the function here, and moto would try to (with
        # Docker) on every message: the mappings are switched off. Their
        # settings stay as created.
        lam = client(endpoint, "lambda")
        for logical, res in self.resources("AWS::Lambda::EventSourceMapping").items():
            if logical in self.physical:
                lam.update_event_source_mapping(UUID=self.physical[logical], Enabled=False)

    def resources(self, kind=None):
        return {n: r for n, r in self.template["Resources"].items() if kind is None or r["Type"] == kind}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def exists(self, logical):
        cond = self.template["Resources"][logical].get("Condition")
        return cond is None or self.condition(cond)

    def ref(self, name):
        pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws",
                  "AWS::StackName": self.name, "AWS::StackId": self.id, "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.template["Resources"]:
            if not self.exists(name):
                fail(f"{self.name}: Ref to {name}, which its condition leaves out")
            return self.physical[name]
        fail(f"{self.name}: Ref to unknown {name}")

    def attr(self, logical, attribute):
        """Fn::GetAtt, asked of the service that holds the resource."""
        key = (logical, attribute)
        if key in self._attrs:
            return self._attrs[key]
        kind = self.template["Resources"][logical]["Type"]
        phys = self.ref(logical)
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            client(self.endpoint, "s3").head_bucket(Bucket=phys)
            value = f"arn:aws:s3:::{phys}"
        elif kind == "AWS::SQS::Queue" and attribute in ("Arn", "QueueName"):
            arn = client(self.endpoint, "sqs").get_queue_attributes(
                QueueUrl=phys, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            value = arn if attribute == "Arn" else arn.split(":")[-1]
        elif kind == "AWS::Events::Rule" and attribute == "Arn":
            value = client(self.endpoint, "events").describe_rule(Name=phys)["Arn"]
        elif kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            groups = client(self.endpoint, "logs").describe_log_groups(logGroupNamePrefix=phys)["logGroups"]
            value = next(g["arn"] for g in groups if g["logGroupName"] == phys)
        elif kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            value = client(self.endpoint, "dynamodb").describe_table(TableName=phys)["Table"]["TableArn"]
        elif kind == "AWS::IAM::Role" and attribute == "Arn":
            value = client(self.endpoint, "iam").get_role(RoleName=phys)["Role"]["Arn"]
        else:
            fail(f"{self.name}: Fn::GetAtt {logical}.{attribute} is not known to this script")
        self._attrs[key] = value
        return value

    def resolve(self, value):
        """The value with every intrinsic function the templates use evaluated;
        AWS::NoValue comes back as the NO_VALUE marker and is dropped from
        lists and mappings."""
        if isinstance(value, list):
            out = [self.resolve(v) for v in value]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attr(logical, attribute)
            if fn == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if fn == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if fn == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if fn == "Fn::Split":
                sep, text = arg
                return self.resolve(text).split(sep)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(v) for v in self.resolve(items))
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else arg
                return self._sub(text, {k: self.resolve(v) for k, v in names.items()})
            if fn == "Fn::ImportValue":
                name = self.resolve(arg)
                # moto also lists the exports of outputs left out by their
                # condition, without a value or empty: those are not exported.
                exports = {e["Name"]: e["Value"] for e in client(self.endpoint, "cloudformation").list_exports()["Exports"]
                           if e.get("Value")}
                if name not in exports:
                    fail(f"{self.name}: imports {name}, which no stack exports")
                return exports[name]
            if fn == "Condition":
                return self.condition(arg)
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def _sub(self, text, names):
        out, i = [], 0
        while True:
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                return "".join(out)
            end = text.index("}", start)
            out.append(text[i:start])
            var = text[start + 2:end]
            if var in names:
                out.append(str(names[var]))
            elif "." in var and var.split(".", 1)[0] in self.template["Resources"]:
                out.append(str(self.attr(*var.split(".", 1))))
            else:
                out.append(str(self.ref(var)))
            i = end + 1

    def put_unimplemented(self):
        """The bucket policy, queue policy and alarms, resolved from the
        template, put through S3's, SQS's and CloudWatch's APIs (which
        validate them as the real services would not fully: see the README)."""
        for logical, res in self.resources().items():
            if res["Type"] == "AWS::S3::Bucket":
                self._put_bucket_properties(logical, res)
            if res["Type"] == "AWS::IAM::Role" and "ManagedPolicyArns" in res.get("Properties", {}):
                for arn in self.resolve(res["Properties"]["ManagedPolicyArns"]):
                    client(self.endpoint, "iam").attach_role_policy(RoleName=self.ref(logical), PolicyArn=arn)
            if res["Type"] not in NOT_IN_MOTO_CFN or not self.exists(logical):
                continue
            props = self.resolve(res["Properties"])
            if res["Type"] == "AWS::S3::BucketPolicy":
                # S3 accepts it; then it goes, because moto applies a bucket
                # policy's Deny without reading its condition (the TLS-only
                # statement would deny every request over moto's plain HTTP).
                # check-permissions.py evaluates it with a real evaluator.
                s3 = client(self.endpoint, "s3")
                s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
                got = json.loads(s3.get_bucket_policy(Bucket=props["Bucket"])["Policy"])
                if got != props["PolicyDocument"]:
                    fail(f"{self.name}: bucket policy read back as {got}")
                s3.delete_bucket_policy(Bucket=props["Bucket"])
                self.bucket_policies[props["Bucket"]] = got
            elif res["Type"] == "AWS::SQS::QueuePolicy":
                for url in props["Queues"]:
                    client(self.endpoint, "sqs").set_queue_attributes(
                        QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
            elif res["Type"] == "AWS::CloudWatch::Alarm":
                numbers = (("Threshold", float), ("Period", int), ("EvaluationPeriods", int),
                           ("DatapointsToAlarm", int))
                for key, kind in numbers:
                    if key in props:
                        props[key] = kind(props[key])
                # A metric-math alarm: each query's period is a number too.
                for m in props.get("Metrics", []):
                    for holder in (m, m.get("MetricStat", {})):
                        if "Period" in holder:
                            holder["Period"] = int(holder["Period"])
                client(self.endpoint, "cloudwatch").put_metric_alarm(AlarmName=f"{self.name}-{logical}", **props)


    def _put_bucket_properties(self, logical, res):
        props = self.resolve({k: v for k, v in res.get("Properties", {}).items() if k in BUCKET_PROPS_NOT_IN_MOTO_CFN})
        s3, bucket = client(self.endpoint, "s3"), self.ref(logical)
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
        if "LifecycleConfiguration" in props:
            rules = [{"ID": r["Id"], "Status": r["Status"], "Filter": {"Prefix": r["Prefix"]},
                      "Expiration": {"Days": int(r["ExpirationInDays"])}}
                     for r in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        notif = props.get("NotificationConfiguration")
        if notif:
            api = {}
            for q in notif.get("QueueConfigurations", []):
                rules = q.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                api.setdefault("QueueConfigurations", []).append({
                    "QueueArn": q["Queue"], "Events": [q["Event"]],
                    "Filter": {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}})
            if notif.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
                api["EventBridgeConfiguration"] = {}
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=api)


NO_VALUE = object()


def unimplemented_types(template):
    """The template's resource types that moto's CloudFormation skips."""
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    types = {r["Type"] for r in template["Resources"].values()}
    return {t for t in types if t not in get_model_map() and t not in NULL_MODELS}


def deploy(endpoint, name, path, params):
    template = transformed(path)
    skipped = unimplemented_types(template) - set(NOT_IN_MOTO_CFN)
    if skipped:
        fail(f"{path}: moto's CloudFormation would skip {sorted(skipped)}: check them another way "
             "(scripts/cfn_local.py, NOT_IN_MOTO_CFN)")
    stack = Stack(endpoint, name, template, params)
    stack.put_unimplemented()
    return stack


def efs_network(endpoint):
    """What the EFS parameters name, created in moto: a VPC with a subnet and
    a security group, a file system and an access point with a POSIX user."""
    ec2, efs = client(endpoint, "ec2"), client(endpoint, "efs")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="sweeper", Description="logdrop sweeper", VpcId=vpc)["GroupId"]
    fs = efs.create_file_system(CreationToken="logdrop", Encrypted=True)["FileSystemId"]
    ap = efs.create_access_point(FileSystemId=fs, PosixUser={"Uid": 1000, "Gid": 1000}, RootDirectory={
        "Path": "/logdrop", "CreationInfo": {"OwnerUid": 1000, "OwnerGid": 1000, "Permissions": "750"}})
    return {"subnet": subnet, "sg": sg, "fs": fs, "ap_arn": ap["AccessPointArn"], "ap_id": ap["AccessPointId"],
            "params": {"EfsAccessPointArn": ap["AccessPointArn"], "EfsFileSystemId": fs,
                       "SweeperSubnetIds": subnet, "SweeperSecurityGroupIds": sg}}


def run(main):
    """Runs main(), printing a Failure as one line on stderr and exiting 1."""
    try:
        main()
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
