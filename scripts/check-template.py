#!/usr/bin/env python3
"""logdrop's own checks of its CloudFormation templates, beyond cfn-lint:

  wildcard-resource  an Allow statement on Resource "*" (every action logdrop
                     needs has resource-level permissions)
  full-access        a *FullAccess managed policy, or an action like "s3:*"
  sam-policies       a SAM function without its own Role (SAM would attach
                     managed policies that grant logs:* and SQS on "*")
  tls-only           a bucket without a policy denying aws:SecureTransport false
                     on the bucket and its objects
  chunk-expiry       chunks (prefix logs/) that may expire before a message
                     about them leaves the queues (retention plus a margin)
  checkpoint-expiry  no expiry for idle checkpoints, or one that can come
                     before the chunks of the task expire
  stop-timeout       a container with LOGDROP_SHUTDOWN_GRACE whose stopTimeout
                     does not leave it that grace plus 5 s (ECS then SIGKILLs it)

  ecs-model          a task definition that RegisterTaskDefinition's input model
                     (botocore's ecs service model) rejects

A .json file is an ECS task definition (aws ecs register-task-definition
--cli-input-json): it is validated against the ECS API model, then its
containers are checked for stop-timeout. The Properties of an
AWS::ECS::TaskDefinition in a template are validated the same way, turned
into the API's shape (camelCase names; a Ref to a parameter is its default,
any other intrinsic function a string).

Usage: check-template.py FILE...; exits 1 naming each failed check and where.
"""

import math
import sys

from cfnlint.decode import decode

# Days a chunk must outlive the longest queue retention: time for a redrive
# from the dead-letter queue after a fix.
MARGIN_DAYS = 3
# Actions that have no resource-level permissions: "*" is their only resource.
NO_RESOURCE_ACTIONS = {"ecr:GetAuthorizationToken", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}
# What the sidecar needs after its grace to save its state and exit.
EXIT_SECONDS = 5


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements(doc):
    return as_list(doc.get("Statement", [])) if isinstance(doc, dict) else []


def policy_documents(name, res):
    """(where, statement) for each IAM statement a resource defines."""
    props = res.get("Properties", {}) or {}
    kind = res.get("Type")
    docs = []
    if kind == "AWS::IAM::Role":
        docs += [(f"{name}.Policies[{p.get('PolicyName')}]", p.get("PolicyDocument")) for p in props.get("Policies", [])]
    elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        docs.append((name, props.get("PolicyDocument")))
    elif kind == "AWS::Serverless::Function":
        docs += [(f"{name}.Policies", p) for p in as_list(props.get("Policies", [])) if isinstance(p, dict)]
    return [(where, s) for where, d in docs for s in statements(d)]


def number(value, params, bound):
    """A literal, or the bound (MinValue/MaxValue, else Default) of the parameter it refers to."""
    if isinstance(value, dict) and "Ref" in value:
        p = params.get(value["Ref"], {})
        value = p.get(bound, p.get("Default"))
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def lifecycle_days(resources, params, prefix, bound):
    found = []
    for res in resources.values():
        if res.get("Type") != "AWS::S3::Bucket":
            continue
        rules = ((res.get("Properties") or {}).get("LifecycleConfiguration") or {}).get("Rules", [])
        for r in rules:
            if r.get("Prefix") == prefix and r.get("Status") == "Enabled" and "ExpirationInDays" in r:
                found.append(number(r["ExpirationInDays"], params, bound))
    return found


def refers_to(value, name):
    if isinstance(value, dict):
        return value.get("Ref") == name or any(refers_to(v, name) for v in value.values()) \
            or (value.get("Fn::GetAtt", [None])[0] == name if isinstance(value.get("Fn::GetAtt"), list) else False)
    if isinstance(value, list):
        return any(refers_to(v, name) for v in value)
    if isinstance(value, str):
        return f"${{{name}" in value
    return False


def check(template):
    resources = template.get("Resources", {}) or {}
    params = template.get("Parameters", {}) or {}
    errors = []

    for name, res in resources.items():
        props = res.get("Properties", {}) or {}
        for arn in as_list(props.get("ManagedPolicyArns", [])) + [
                p for p in as_list(props.get("Policies", [])) if isinstance(p, str)]:
            if "FullAccess" in str(arn):
                errors.append(("full-access", f"{name}: managed policy {arn}"))
        for where, s in policy_documents(name, res):
            if s.get("Effect") != "Allow":
                continue
            actions = set(as_list(s.get("Action", [])))
            if "*" in as_list(s.get("Resource", [])) and not actions <= NO_RESOURCE_ACTIONS:
                errors.append(("wildcard-resource", f"{where}: {s.get('Action')} on Resource \"*\""))
            for action in as_list(s.get("Action", [])):
                if isinstance(action, str) and (action == "*" or action.endswith(":*")):
                    errors.append(("full-access", f"{where}: action {action}"))
        if res.get("Type") == "AWS::Serverless::Function" and "Role" not in props:
            errors.append(("sam-policies", f"{name}: no Role, so SAM attaches its managed policies"))

        if res.get("Type") == "AWS::ECS::TaskDefinition":
            errors += stop_timeouts(props.get("ContainerDefinitions", []), "Environment", "StopTimeout", name)
            errors += [(n, f"{name}: {why}") for n, why in validate_task_definition(api_shape(props, params))]

    policies = [r.get("Properties", {}) for r in resources.values() if r.get("Type") == "AWS::S3::BucketPolicy"]
    for name, res in resources.items():
        if res.get("Type") != "AWS::S3::Bucket":
            continue
        tls = False
        for p in policies:
            if not refers_to(p.get("Bucket"), name):
                continue
            for s in statements(p.get("PolicyDocument")):
                cond = ((s.get("Condition") or {}).get("Bool") or {}).get("aws:SecureTransport")
                targets = as_list(s.get("Resource", []))
                if s.get("Effect") == "Deny" and str(cond).lower() == "false" and len(targets) >= 2 \
                        and all(refers_to(t, name) for t in targets):
                    tls = True
        if not tls:
            errors.append(("tls-only", f"{name}: no bucket policy denies requests without TLS"))

    queue_days = [number((r.get("Properties") or {}).get("MessageRetentionPeriod", 345600), params, "MaxValue")
                  for r in resources.values() if r.get("Type") == "AWS::SQS::Queue"]
    if any(r.get("Type") == "AWS::S3::Bucket" for r in resources.values()):
        chunk_min = lifecycle_days(resources, params, "logs/", "MinValue")
        chunk_max = lifecycle_days(resources, params, "logs/", "MaxValue")
        need = math.ceil(max([d or 0 for d in queue_days] + [0]) / 86400) + MARGIN_DAYS
        if not chunk_min:
            errors.append(("chunk-expiry", "no lifecycle rule expires chunks under logs/"))
        for days in chunk_min:
            if days is None or days < need:
                errors.append(("chunk-expiry", f"chunks may expire after {days} days, before the queues' "
                                               f"retention plus {MARGIN_DAYS} days ({need} days)"))
        cp = lifecycle_days(resources, params, "checkpoints/", "MinValue")
        if not cp:
            errors.append(("checkpoint-expiry", "no lifecycle rule expires idle checkpoints under checkpoints/"))
        longest_chunk = max([d or math.inf for d in chunk_max] + [0])
        for days in cp:
            if days is None or days < longest_chunk:
                errors.append(("checkpoint-expiry", f"checkpoints may expire after {days} days, "
                                                    f"before chunks ({longest_chunk} days)"))
    return errors


def seconds(duration):
    """LOGDROP_SHUTDOWN_GRACE's syntax: 500ms, 5s, 2m, 1h, or a bare number of seconds."""
    text = str(duration).strip()
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    return float(text) if text.replace(".", "", 1).isdigit() else None


def stop_timeouts(containers, env_key, timeout_key, where):
    errors = []
    for c in containers:
        name = c.get("Name", c.get("name"))
        env = {e.get("Name", e.get("name")): e.get("Value", e.get("value")) for e in c.get(env_key, [])}
        if "LOGDROP_SHUTDOWN_GRACE" not in env:
            continue
        grace = seconds(env["LOGDROP_SHUTDOWN_GRACE"])
        timeout = c.get(timeout_key)
        if grace is None or not isinstance(timeout, (int, float)) or timeout < grace + EXIT_SECONDS:
            errors.append(("stop-timeout", f"{where}.{name}: stopTimeout {timeout} for a shutdown grace of "
                                           f"{env['LOGDROP_SHUTDOWN_GRACE']} (needs the grace plus {EXIT_SECONDS} s)"))
    return errors


# Mappings whose keys are the user's, not property names.
FREE_KEYS = {"Options", "DockerLabels", "SecretOptions"}
# CloudFormation names whose API name is not just the first letter lowered.
API_NAMES = {"EFSVolumeConfiguration": "efsVolumeConfiguration", "FilesystemId": "fileSystemId", "IAM": "iam"}


def api_shape(value, params, key=None):
    """CloudFormation properties of a task definition in the shape of
    RegisterTaskDefinition's input: Pascal-case names in camelCase, a Ref to a
    parameter replaced by its default, every other intrinsic by a string."""
    if isinstance(value, list):
        return [api_shape(v, params) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            default = (params.get(arg) or {}).get("Default")
            return str(default) if default is not None else f"<{arg}>"
        if fn.startswith("Fn::"):
            return f"<{fn}>"
    if key in FREE_KEYS:
        return {k: api_shape(v, params) for k, v in value.items()}
    return {API_NAMES.get(k, k[:1].lower() + k[1:]): api_shape(v, params, k) for k, v in value.items()}


def validate_task_definition(doc):
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(doc, shape)
    return [("ecs-model", line) for line in report.generate_report().splitlines()] if report.has_errors() else []


def check_task_definition(path):
    import json

    with open(path) as f:
        doc = json.load(f)
    errors = validate_task_definition(doc)
    return errors + stop_timeouts(doc.get("containerDefinitions", []), "environment", "stopTimeout", "task")


def main(paths):
    failed = False
    for path in paths:
        if path.endswith(".json"):
            for name, why in check_task_definition(path):
                print(f"{path}: {name}: {why}", file=sys.stderr)
                failed = True
            continue
        template, matches = decode(path)
        if template is None:
            print(f"{path}: cannot be read: {matches}", file=sys.stderr)
            failed = True
            continue
        for name, why in check(template):
            print(f"{path}: {name}: {why}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
