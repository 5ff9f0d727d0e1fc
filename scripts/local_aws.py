#!/usr/bin/env python3
"""Small helpers for the demo against a local AWS endpoint (moto): create a
bucket, upload the sample chunk objects, and print a log group's events."""

import argparse
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


def show(args):
    logs = client("logs", args.endpoint)
    streams = logs.describe_log_streams(logGroupName=args.group)["logStreams"]
    for s in streams:
        name = s["logStreamName"]
        events, token = [], None
        while True:
            kw = {"nextToken": token} if token else {}
            page = logs.get_log_events(logGroupName=args.group, logStreamName=name, startFromHead=True, **kw)
            if not page["events"] or page["nextForwardToken"] == token:
                break
            events += page["events"]
            token = page["nextForwardToken"]
        print(f"\n== {args.group} / {name}: {len(events)} events")
        for e in events[: args.head]:
            when = dt.datetime.fromtimestamp(e["timestamp"] / 1000, dt.timezone.utc).isoformat(timespec="milliseconds")
            first, _, rest = e["message"].partition("\n")
            more = f"   (+{rest.count(chr(10)) + 1} more lines)" if rest else ""
            print(f"  {when}  {first[:110]}{more}")
        if len(events) > args.head:
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
    s = sub.add_parser("show")
    s.add_argument("--group", required=True)
    s.add_argument("--head", type=int, default=4)
    args = p.parse_args()
    {"upload": upload, "put": put, "show": show}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
