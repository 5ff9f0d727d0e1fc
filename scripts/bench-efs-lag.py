#!/usr/bin/env python3
"""The lag of a dead task's last lines on EFS, kill → in CloudWatch Logs, at
the default settings (owner stale after 30 s, line time-out 60 s), measured
against the local AWS (moto; run through scripts/with-moto.sh).

Tasks write JULI lines into their directories under one root while their
sidecars run; each sidecar is SIGKILLed right after its task's last whole line
and a last line left unfinished (no newline), at a different moment of the
sweeper's one-minute schedule. A sweeper runs every 60 s as the scheduled
Lambda would; `shipper poll` consumes the queue all along. The lag of each
marker line is the time from the kill to the moment a GetLogEvents first
returns it (polled every 0.25 s). Part of `make bench`."""

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from local_aws import client, notify  # noqa: E402

BUCKET, QUEUE, GROUP, CLUSTER = "efs-lag", "efs-lag", "/logdrop/efs-lag", "lag"
SCHEDULE = 60.0


def juli(msg):
    now = dt.datetime.now(dt.timezone.utc)
    return f"{now:%d-%b-%Y %H:%M:%S}.{now.microsecond // 1000:03d} INFO [main] bench.Lag {msg}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    ap.add_argument("--phases", default="10,30,50", help="seconds after a sweep at which tasks are killed")
    ap.add_argument("--out", default="target/bench-efs-lag.md")
    args = ap.parse_args()
    notify(argparse.Namespace(endpoint=args.endpoint, bucket=BUCKET, queue=QUEUE))
    queue = client("sqs", args.endpoint).get_queue_url(QueueName=QUEUE)["QueueUrl"]
    work = tempfile.mkdtemp(prefix="efs-lag-")
    root = os.path.join(work, "efs")
    os.makedirs(root)
    env = dict(os.environ, LOGDROP_BUCKET=BUCKET, LOGDROP_LOG_GROUP=GROUP, LOGDROP_CLUSTER=CLUSTER,
               LOGDROP_CREATE_LOG_GROUP="true", RUST_LOG="warn")
    env.pop("LOGDROP_LOG_DIR", None)
    logs = open(os.path.join(work, "processes.log"), "ab")
    shipper = subprocess.Popen(["target/release/shipper", "poll", "--queue-url", queue, "--wait-seconds", "1"],
                               env=env, stdout=logs, stderr=logs)
    phases = [float(p) for p in args.phases.split(",")]
    tasks = []
    for i, _ in enumerate(phases):
        task = f"lag{i}"
        sidecar = subprocess.Popen(["target/release/sidecar"], env=dict(env, LOGDROP_EFS_ROOT=root, LOGDROP_TASK_ID=task),
                                   stdout=logs, stderr=logs)
        tasks.append({"task": task, "sidecar": sidecar, "dir": os.path.join(root, CLUSTER, task)})
    for t in tasks:
        while not os.path.isdir(t["dir"]):
            time.sleep(0.05)
        t["file"] = os.path.join(t["dir"], f"catalina.{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}.log")

    stop = threading.Event()
    sweeps = []

    def schedule():
        while not stop.is_set():
            sweeps.append(time.time())
            subprocess.run(["target/release/sweeper", "--root", root], env=env, stdout=subprocess.DEVNULL, stderr=logs)
            stop.wait(max(0.0, sweeps[-1] + SCHEDULE - time.time()))

    start = time.time() + 1.0
    time.sleep(1.0)
    sweeper = threading.Thread(target=schedule, daemon=True)
    sweeper.start()
    for t, phase in sorted(zip(tasks, phases), key=lambda p: p[1]):
        while time.time() < start + phase:
            with open(t["file"], "a") as f:
                f.write(juli("a line while the task runs") + "\n")
            time.sleep(0.2)
        t["whole"] = juli(f"{t['task']} last whole line")
        t["unfinished"] = juli(f"{t['task']} last line, unfinished")
        with open(t["file"], "a") as f:
            f.write(t["whole"] + "\n" + t["unfinished"])
        t["sidecar"].kill()
        t["killed"] = time.time()
        t["sidecar"].wait()

    logs_client = client("logs", args.endpoint)
    seen = {}
    want = {(t["task"], kind): t[kind] for t in tasks for kind in ("whole", "unfinished")}
    deadline = time.time() + 6 * SCHEDULE
    while len(seen) < len(want) and time.time() < deadline:
        try:
            streams = [s["logStreamName"] for s in logs_client.describe_log_streams(logGroupName=GROUP)["logStreams"]]
        except logs_client.exceptions.ResourceNotFoundException:
            streams = []
        for t in tasks:
            messages = set()
            for stream in (s for s in streams if t["task"] in s):
                events = logs_client.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
                messages |= {e["message"] for e in events["events"]}
            for kind in ("whole", "unfinished"):
                if (t["task"], kind) not in seen and want[(t["task"], kind)] in messages:
                    seen[(t["task"], kind)] = time.time() - t["killed"]
        time.sleep(0.25)
    stop.set()
    shipper.terminate()
    shipper.wait()

    lines = ["## EFS: a dead task's last lines, kill → in CloudWatch Logs (defaults; sweeper every 60 s; local AWS)", "",
             "| task | killed s after a sweep | last whole line s | last unfinished line s |", "|---|---|---|---|"]
    for t, phase in zip(tasks, phases):
        cell = lambda kind: f"{seen[(t['task'], kind)]:.1f}" if (t["task"], kind) in seen else "**not arrived**"
        lines.append(f"| {t['task']} | {phase:.0f} | {cell('whole')} | {cell('unfinished')} |")
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    if len(seen) < len(want):
        print(f"lines missing; the processes' logs are in {work}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
