#!/usr/bin/env python3
"""Small helpers for the demo against a local AWS endpoint (moto): create a
bucket, upload the sample chunk objects, and print a log group's events."""

import argparse
import json
import datetime as dt
import gzip
import os
import sys

import boto3

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
CORPUS_DAY = dt.date(2026, 11, 24)


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def rebase(data, day):
    """Moves the sample's dates to `day` (same lengths, so keys stay valid)."""
    for fmt in ("{d:02d}/{m}/{y}", "{d:02d}-{m}-{y}"):
        old = fmt.format(d=CORPUS_DAY.day, m=MONTHS[CORPUS_DAY.month - 1], y=CORPUS_DAY.year)
        new = fmt.format(d=day.day, m=MONTHS[day.month - 1], y=day.year)
        data = data.replace(old.encode(), new.encode())
    return data


def upload(args):
    s3 = client("s3", args.endpoint)
    s3.create_bucket(Bucket=args.bucket)
    day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    for root, _, files in os.walk(args.dir):
        for name in sorted(files):
            path = os.path.join(root, name)
            key = os.path.relpath(path, args.dir)
            with open(path, "rb") as f:
                body = gzip.compress(rebase(gzip.decompress(f.read()), day), mtime=0)
            s3.put_object(Bucket=args.bucket, Key=key, Body=body, Metadata={"logdrop-version": "1"})
            print(f"uploaded s3://{args.bucket}/{key}")


def put(args):
    s3 = client("s3", args.endpoint)
    try:
        s3.create_bucket(Bucket=args.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.upload_file(args.file, args.bucket, args.key)


def notify(args):
    """Bucket → SQS notifications for new chunks, as template.yaml sets up."""
    s3, sqs = client("s3", args.endpoint), client("sqs", args.endpoint)
    try:
        s3.create_bucket(Bucket=args.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    url = sqs.create_queue(QueueName=args.queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = [{"Name": "prefix", "Value": "logs/"}, {"Name": "suffix", "Value": ".gz"}]
    s3.put_bucket_notification_configuration(Bucket=args.bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": rules}}}]})
    print(f"s3://{args.bucket} notifies {arn} of new logs/*.gz")


def queue_url(args):
    print(client("sqs", args.endpoint).get_queue_url(QueueName=args.queue)["QueueUrl"])


def renotify(args):
    """Sends the queue an S3 notification for every chunk again, as a duplicate delivery would."""
    s3, sqs = client("s3", args.endpoint), client("sqs", args.endpoint)
    url = sqs.get_queue_url(QueueName=args.queue)["QueueUrl"]
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix="logs/"):
        for o in page.get("Contents", []):
            body = {"Records": [{"eventName": "ObjectCreated:Put",
                                 "s3": {"bucket": {"name": args.bucket}, "object": {"key": o["Key"]}}}]}
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
            n += 1
    print(f"{n} notifications sent again")


def write_slowly(args):
    """Plays "Tomcat": appends the sample logs to a directory in random-sized writes."""
    import random
    import time
    rnd = random.Random(7)
    day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    files = {}
    for root, _, names in os.walk(args.objects):
        for name in sorted(names):
            path = os.path.join(root, name)
            file = os.path.basename(os.path.dirname(os.path.dirname(path)))
            with open(path, "rb") as f:
                files[file] = files.get(file, b"") + rebase(gzip.decompress(f.read()), day)
    pos = {name: 0 for name in files}
    while any(pos[n] < len(files[n]) for n in files):
        for name, data in files.items():
            n = rnd.randint(1, 6000)
            with open(os.path.join(args.dir, name), "ab") as f:
                f.write(data[pos[name]:pos[name] + n])
            pos[name] += n
        time.sleep(rnd.uniform(0, 0.05))
    for name, data in files.items():
        print(f"wrote {len(data)} bytes to {name}")


def count(args):
    s3 = client("s3", args.endpoint)
    page = s3.list_objects_v2(Bucket=args.bucket, Prefix=args.prefix)
    print(page.get("KeyCount", 0))


def show(args):
    logs = client("logs", args.endpoint)
    streams = logs.describe_log_streams(logGroupName=args.group)["logStreams"]
    for s in streams:
        name = s["logStreamName"]
        if args.task and not name.endswith("/" + args.task):
            continue
        events, token = [], None
        while True:
            kw = {"nextToken": token} if token else {}
            page = logs.get_log_events(logGroupName=args.group, logStreamName=name, startFromHead=True, **kw)
            if not page["events"] or page["nextForwardToken"] == token:
                break
            events += page["events"]
            token = page["nextForwardToken"]
        print(f"\n== {args.group} / {name}: {len(events)} events")
        shown = events[-args.tail:] if args.tail else events[: args.head]
        if args.tail and len(events) > args.tail:
            print(f"  ... {len(events) - args.tail} earlier, then the last {args.tail}:")
        for e in shown:
            when = dt.datetime.fromtimestamp(e["timestamp"] / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")
            first, _, rest = e["message"].partition("\n")
            more = f"   (+{rest.count(chr(10)) + 1} more lines)" if rest else ""
            print(f"  {when}  {first[:110]}{more}")
        if not args.tail and len(events) > args.head:
            print(f"  ... {len(events) - args.head} more")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--endpoint", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upload")
    u.add_argument("--bucket", required=True)
    u.add_argument("--dir", required=True)
    pp = sub.add_parser("put")
    pp.add_argument("--bucket", required=True)
    pp.add_argument("--key", required=True)
    pp.add_argument("--file", required=True)
    n = sub.add_parser("notify")
    n.add_argument("--bucket", required=True)
    n.add_argument("--queue", required=True)
    q = sub.add_parser("queue-url")
    q.add_argument("--queue", required=True)
    rn = sub.add_parser("renotify")
    rn.add_argument("--bucket", required=True)
    rn.add_argument("--queue", required=True)
    w = sub.add_parser("write-slowly")
    w.add_argument("--objects", required=True)
    w.add_argument("--dir", required=True)
    c = sub.add_parser("count")
    c.add_argument("--bucket", required=True)
    c.add_argument("--prefix", required=True)
    s = sub.add_parser("show")
    s.add_argument("--group", required=True)
    s.add_argument("--head", type=int, default=4)
    s.add_argument("--tail", type=int, default=0, help="show the last N events instead")
    s.add_argument("--task", help="only the streams of this task id")
    args = p.parse_args()
    return {"upload": upload, "put": put, "show": show, "notify": notify,
     "write-slowly": write_slowly, "queue-url": queue_url, "renotify": renotify,
     "count": count}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
