#!/usr/bin/env python3
"""Cost benchmark (issue 9): what logdrop costs per task-month in AWS requests,
and the lag from a line being written to it being stored in CloudWatch Logs.

Per cell: "Tomcat" appends access lines at RATE a second and one JULI line a
minute, each carrying its write time and a sequence number; the release
sidecar follows the directory (defaults, but for the cell's flush interval);
the bucket notifies an SQS queue; a poller standing in for Lambda's event
source mapping (batch size 10, 5 s window, as template.yaml configures) runs
`shipper invoke` on each batch and deletes what succeeded. Every request of
the three goes through a counting proxy (scripts/bench-cost-proxy.py).

Counting window: from the sidecar's 2nd upload of the access file to its last
upload before the writer stops, so it spans whole cut periods of the busy file
and the start-up chunk is left out; counts are scaled by 30 days / window.
Run by scripts/bench-cost.sh (which starts moto and builds the binaries).
"""

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import pathlib
import signal
import statistics
import subprocess
import tempfile
import threading
import time

import boto3

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("proxy", ROOT / "scripts" / "bench-cost-proxy.py")
proxy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(proxy)

BIN = pathlib.Path(os.environ.get("BENCH_COST_BIN_DIR", ROOT / "target" / "release"))
SHIPPER, SIDECAR = str(BIN / "shipper"), str(BIN / "sidecar")
MONTH_S = 30 * 86400
# us-east-1 list prices (issue 9); Lambda arm64 as template.yaml deploys it.
PRICE = {"s3_put": 5e-6, "s3_get": 0.4e-6, "sqs": 0.4e-6, "lambda_req": 0.2e-6,
         "lambda_gb_s": 0.0000133334, "ddb_wru": 0.625e-6, "ddb_rru": 0.125e-6, "logs_gb": 0.50}
LAMBDA_GB = 256 / 1024
BATCH, WINDOW_S = 10, 5.0
# In-Region latencies assumed for the duration model (moto answers faster than AWS).
LATENCY_MS = {("s3", "PutObject"): 50, ("s3", "GetObject"): 25, ("logs", "PutLogEvents"): 30,
              ("logs", "CreateLogStream"): 0, ("dynamodb", "PutItem"): 8, ("dynamodb", "GetItem"): 5}
S3_PUT_OPS = {"PutObject", "CopyObject", "PostObject", "ListObjects", "CreateBucket"}
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
TASK = "0b5e0b5e0b5e0b5e0b5e0b5e0b5e0b5e"


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class Writer(threading.Thread):
    """Appends lines that carry their write time (ms) and a sequence number."""

    def __init__(self, log_dir, rate, error_every=None):
        super().__init__(daemon=True)
        # A SEVERE event (with a stack trace) every `error_every` seconds, for
        # the early flush's lag and cost; None writes none.
        self.error_every = error_every
        day = dt.datetime.now(dt.timezone.utc).date().isoformat()
        self.access = os.path.join(log_dir, f"localhost_access_log.{day}.txt")
        self.juli = os.path.join(log_dir, f"catalina.{day}.log")
        self.rate, self.stop, self.written = rate, threading.Event(), {"access": 0, "juli": 0, "error": 0}

    def run(self):
        tick = 1.0 if self.rate <= 10 else 0.1
        per_tick = max(1, round(self.rate * tick))
        start = time.time()
        next_juli, n = start + 1.5, 0
        next_error = start + 2.5 if self.error_every else float("inf")
        with open(self.access, "ab", buffering=0) as a, open(self.juli, "ab", buffering=0) as j:
            while not self.stop.is_set():
                now = time.time()
                u = dt.datetime.fromtimestamp(now, dt.timezone.utc)
                ms = int(now * 1000)
                stamp = f"{u.day:02d}/{MONTHS[u.month - 1]}/{u.year}:{u:%H:%M:%S} +0000"
                lines = []
                for _ in range(per_tick):
                    seq = self.written["access"]
                    lines.append(f'10.0.0.7 - - [{stamp}] "GET /shop/item?s={seq}&t={ms} HTTP/1.1" 200 5120\n')
                    self.written["access"] += 1
                a.write("".join(lines).encode())
                if now >= next_juli:
                    seq = self.written["juli"]
                    j.write((f"{u.day:02d}-{MONTHS[u.month - 1]}-{u.year} {u:%H:%M:%S}.{u.microsecond // 1000:03d} "
                             f"INFO [main] org.example.Bench.tick s={seq}&t={ms}\n").encode())
                    self.written["juli"] += 1
                    next_juli += 60
                while now >= next_error:
                    seq = self.written["error"]
                    j.write((f"{u.day:02d}-{MONTHS[u.month - 1]}-{u.year} {u:%H:%M:%S}.{u.microsecond // 1000:03d} "
                             f"SEVERE [main] org.example.Bench.fail e={seq}&t={ms}\n"
                             f"\tat org.example.Bench.fail(Bench.java:{seq})\n").encode())
                    self.written["error"] += 1
                    next_error += self.error_every
                n += 1
                self.stop.wait(max(0.0, start + n * tick - time.time()))


class Poller(threading.Thread):
    """Lambda's SQS event source mapping, as far as cost goes: long polls while
    idle, then gathers up to 10 messages for at most 5 s, invokes, deletes."""

    def __init__(self, sqs, queue_url, work, shipper_env):
        super().__init__(daemon=True)
        self.sqs, self.url, self.work, self.env = sqs, queue_url, work, shipper_env
        self.stop, self.invocations, self.failures = threading.Event(), [], 0

    def run(self):
        while not self.stop.is_set():
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=BATCH,
                                            WaitTimeSeconds=2 if self.stop.is_set() else 20).get("Messages", [])
            if not msgs:
                continue
            first = time.time()
            while len(msgs) < BATCH and (left := WINDOW_S - (time.time() - first)) > 0:
                msgs += self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=BATCH - len(msgs),
                                                 WaitTimeSeconds=max(1, int(left))).get("Messages", [])
            self.invoke(msgs)

    def invoke(self, msgs):
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench", "awsRegion": "us-east-1"}
                   for m in msgs]
        event = os.path.join(self.work, "batch.json")
        with open(event, "w") as f:
            json.dump({"Records": records}, f)
        t = time.time()
        out = subprocess.run([SHIPPER, "invoke", "--event", event],
                             env=self.env, capture_output=True, text=True)
        self.invocations.append({"t": t, "ms": (time.time() - t) * 1000, "records": len(msgs)})
        try:
            failed = {f["itemIdentifier"] for f in json.loads(out.stdout).get("batchItemFailures", [])}
        except ValueError:
            failed = {m["MessageId"] for m in msgs}
        if failed or out.returncode:
            self.failures += 1
            print(f"    shipper failed ({out.returncode}): {out.stderr.strip()[-300:]}", flush=True)
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
                if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=done)


def events(logs, group):
    out = []
    for s in logs.describe_log_streams(logGroupName=group).get("logStreams", []):
        token = None
        while True:
            kw = {"nextToken": token} if token else {}
            page = logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"],
                                       startFromHead=True, **kw)
            out += page["events"]
            if not page["events"] or page["nextForwardToken"] == token:
                break
            token = page["nextForwardToken"]
    return out


def startup_ms(env, work):
    """A shipper run on an empty event: the process start a warm Lambda does not repeat."""
    path = os.path.join(work, "empty.json")
    with open(path, "w") as f:
        f.write('{"Records": []}')
    runs = []
    for _ in range(5):
        t = time.time()
        subprocess.run([SHIPPER, "invoke", "--event", path], env=env,
                       capture_output=True)
        runs.append((time.time() - t) * 1000)
    return statistics.median(runs)


def run_cell(i, rate, flush, args, moto, urls, recorder, error_every=None):
    name = f"cost{i}-{os.getpid()}"
    s3, sqs, logs = client("s3", moto), client("sqs", urls["esm"]), client("logs", moto)
    s3.create_bucket(Bucket=name)
    q = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = [{"Name": "prefix", "Value": "logs/"}, {"Name": "suffix", "Value": ".gz"}]
    s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": rules}}}]})
    group = f"/bench/{name}"
    logs.create_log_group(logGroupName=group)
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOGDROP_")}
    base.update(AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")
    shipper_env = dict(base, AWS_ENDPOINT_URL=urls["shipper"], LOGDROP_LOG_GROUP=group,
                       LOGDROP_CREATE_LOG_GROUP="false")
    if args.dynamodb:
        ddb = client("dynamodb", moto)
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        shipper_env["LOGDROP_CHECKPOINT_TABLE"] = name
    with tempfile.TemporaryDirectory() as work:
        log_dir = os.path.join(work, "logs")
        os.mkdir(log_dir)
        boot_ms = startup_ms(shipper_env, work)
        recorder.take()
        sidecar_env = dict(base, AWS_ENDPOINT_URL=urls["sidecar"], LOGDROP_BUCKET=name, LOGDROP_LOG_DIR=log_dir,
                           LOGDROP_CLUSTER="bench", LOGDROP_TASK_ID=TASK)
        if flush != "default":
            sidecar_env["LOGDROP_FLUSH_INTERVAL"] = flush
        poller = Poller(sqs, q, work, shipper_env)
        poller.start()
        writer = Writer(log_dir, rate, error_every)
        sidecar = subprocess.Popen([SIDECAR], env=sidecar_env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        writer.start()
        started, kept, got, stopped = time.time(), [], [], None
        try:
            # Run until the window holds enough cut periods of the access file.
            while True:
                time.sleep(1)
                kept += recorder.take()
                ups = [r["t"] for r in kept if is_access_upload(r)]
                elapsed = time.time() - started
                if len(ups) >= 2 and len(ups) - 2 >= args.periods and ups[-1] - ups[1] >= args.min_window:
                    break
                if elapsed > args.max_cell:
                    break
            writer.stop.set()
            writer.join()
            stopped = time.time()
            sidecar.send_signal(signal.SIGTERM)
            sidecar.wait(timeout=120)
            want = sum(writer.written.values())
            deadline = time.time() + 300
            while len(got := events(logs, group)) < want and time.time() < deadline:
                time.sleep(3)
        finally:
            writer.stop.set()
            if sidecar.poll() is None:
                sidecar.kill()
            poller.stop.set()
            # Its last long poll may still be open on an empty queue: let it end alone.
            poller.join(timeout=1)
        kept += recorder.take()
    return summarise(rate, flush, kept, poller, writer, got, boot_ms, started, stopped)


def is_access_upload(r):
    """An upload that carries the busy access file: its v1 chunk, or any
    layout 2 segment (every flush's segment holds the access file's bytes)."""
    key = r["key"]
    return (r["role"] == "sidecar" and r["op"] == "PutObject"
            and ("localhost_access_log" in key or "/segment/" in key))


def summarise(rate, flush, recs, poller, writer, got, boot_ms, started, stopped):
    marks = sorted(r["t"] for r in recs if is_access_upload(r) and r["t"] <= stopped)
    t0, t1 = (marks[1], marks[-1]) if len(marks) >= 3 else (started, stopped)
    inside = [r for r in recs if t0 < r["t"] <= t1]
    invs = [v for v in poller.invocations if t0 < v["t"] <= t1]
    scale = MONTH_S / (t1 - t0)
    count = lambda pred: sum(1 for r in inside if pred(r)) * scale
    objects = count(lambda r: r["role"] == "sidecar" and r["op"] == "PutObject" and r["kind"] == "chunk")
    s3_put = count(lambda r: r["service"] == "s3" and r["op"] in S3_PUT_OPS)
    s3_get = count(lambda r: r["service"] == "s3" and r["op"] not in S3_PUT_OPS)
    cp_put = count(lambda r: r["service"] == "s3" and r["op"] == "PutObject" and r["kind"] == "checkpoint")
    # S3's own SendMessage for each notification is an SQS request too.
    sqs = count(lambda r: r["service"] == "sqs") + objects
    wru = sum(r["units"] for r in inside if r["service"] == "dynamodb" and r["op"] != "GetItem") * scale
    rru = sum(r["units"] for r in inside if r["service"] == "dynamodb" and r["op"] == "GetItem") * scale
    billed_ms = 0.0
    for v in invs:
        handler = max(1.0, v["ms"] - boot_ms)
        model = sum(LATENCY_MS.get((r["service"], r["op"]), 20) for r in recs
                    if r["role"] == "shipper" and v["t"] <= r["t"] <= v["t"] + v["ms"] / 1000)
        billed_ms += math.ceil(max(handler, model))
    lam_n = len(invs) * scale
    cost = {"s3": s3_put * PRICE["s3_put"] + s3_get * PRICE["s3_get"], "sqs": sqs * PRICE["sqs"],
            "lambda": lam_n * PRICE["lambda_req"] + billed_ms * scale / 1000 * LAMBDA_GB * PRICE["lambda_gb_s"],
            "dynamodb": wru * PRICE["ddb_wru"] + rru * PRICE["ddb_rru"]}
    lags, error_lags, seen = [], [], {}
    for e in got:
        msg = e["message"]
        kind = "access" if "GET /shop" in msg else "error" if "SEVERE" in msg else "juli"
        seq, t = msg.rsplit("e=" if kind == "error" else "s=", 1)[1].split()[0].split("&t=")
        seen[(kind, seq)] = seen.get((kind, seq), 0) + 1
        if t0 < int(t) / 1000 <= t1:
            (error_lags if kind == "error" else lags).append((e["ingestionTime"] - int(t)) / 1000)
    want = {(k, str(s)) for k, n in writer.written.items() for s in range(n)}
    exact = set(seen) == want and all(n == 1 for n in seen.values())
    lags.sort()
    error_lags.sort()
    q = lambda p, xs=lags: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
    ingest_gb = sum(len(e["message"].encode()) + 26 for e in got) / (stopped - started) * MONTH_S / 1e9
    return {"rate": rate, "flush": flush, "window_s": round(t1 - t0, 1), "objects_per_min": objects / 43200,
            "s3_put_per_obj": s3_put / objects if objects else 0, "s3_get_per_obj": s3_get / objects if objects else 0,
            "cp_put_per_obj": cp_put / objects if objects else 0, "invocations_per_min": lam_n / 43200,
            "cost": cost, "total": sum(cost.values()), "p50": q(0.5), "p99": q(0.99), "max": lags[-1] if lags else 0,
            "errors": writer.error_every, "error_p50": q(0.5, error_lags), "error_p99": q(0.99, error_lags),
            "error_max": error_lags[-1] if error_lags else 0, "errors_in_window": len(error_lags),
            "exact": exact, "failures": poller.failures, "lines": sum(writer.written.values()),
            "ingest_cost": ingest_gb * PRICE["logs_gb"], "startup_ms": boot_ms,
            "requests": {k: round(v * scale) for k, v in tally(inside).items()}}


def tally(recs):
    out = {}
    for r in recs:
        k = f"{r['role']} {r['service']} {r['op']} {r['kind']}".strip()
        out[k] = out.get(k, 0) + 1
    return out


def fmt_row(c):
    k = c["cost"]
    return (f"| {c['rate']} | {c['flush']} | {c['objects_per_min']:.1f} | {c['s3_put_per_obj']:.2f} "
            f"({c['cp_put_per_obj']:.2f}) | {c['s3_get_per_obj']:.2f} | {c['invocations_per_min']:.1f} | "
            f"{k['s3']:.2f} | {k['sqs']:.2f} | {k['lambda']:.2f} | {k['dynamodb']:.2f} | **{c['total']:.2f}** | "
            f"{c['p50']:.1f} | {c['p99']:.1f} | {c['max']:.1f} | {'yes' if c['exact'] else '**NO**'} | "
            f"{c['window_s']:.0f} | {c['ingest_cost']:.2f} | {c['errors'] or '-'} | "
            f"{c['error_p50']:.1f} | {c['error_p99']:.1f} | {c['error_max']:.1f} | {c['errors_in_window']} |")


def report(cells, args, out):
    lines = [f"# logdrop cost benchmark: {args.label}", "",
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, moto; "
             f"checkpoints in {'DynamoDB' if args.dynamodb else 'S3'}. Costs in USD per task-month "
             "(30 days) at us-east-1 list prices; lag from a line's write to its CloudWatch ingestion.", "",
             "| lines/s | flush | objects/min | S3 PUT/obj (checkpoint) | S3 GET/obj | invocations/min | S3 | SQS "
             "| Lambda | DynamoDB | total | p50 lag s | p99 lag s | max lag s | exactly once | window s "
             "| CW ingestion (not in total) | an error every (s) | error p50 lag s | error p99 lag s | error max lag s "
             "| errors in window |",
             "|" + "---|" * 22]
    lines += [fmt_row(c) for c in cells]
    lines += ["", "Requests per task-month in the counting window, by caller:", ""]
    keys = sorted({k for c in cells for k in c["requests"]})
    lines.append("| request | " + " | ".join(f"{c['rate']}/s {c['flush']}" for c in cells) + " |")
    lines.append("|---|" + "---|" * len(cells))
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{c['requests'].get(k, 0):,}" for c in cells) + " |")
    lines += ["", "SQS includes S3's SendMessage per notification (one per object) and the poller's "
              "ReceiveMessage/DeleteMessageBatch (Lambda's event source mapping bills these to the queue owner; "
              "idle long polls are per queue, shared by all tasks). Lambda: $0.20 per million invocations plus "
              "256 MB arm64 duration, each invocation billed the longer of its measured handler time (wall time "
              "less an empty run's process start) and the sum of assumed in-Region latencies of its requests "
              f"({', '.join(f'{s} {o} {ms} ms' for (s, o), ms in LATENCY_MS.items())}, other 20 ms; "
              "CreateLogStream counts 0 ms: each `shipper invoke` is a fresh process, where a warm Lambda "
              "remembers its streams). "
              "Lag percentiles cover lines written inside the window."]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(cells, indent=1))
    draw(cells, out.with_suffix(".png"))
    print(text)


def seconds(flush):
    return 60.0 if flush == "default" else float(flush.rstrip("s"))


def draw(cells, path):
    """The cost-versus-lag picture, so a flush interval is picked by looking:
    for the rate with the most flush intervals (cells without errors), one
    point per interval, cost per task-month against p50 and p99 lag; other
    rates as points; cells with errors as a bar from their error p50 to their
    error max lag. Both axes logarithmic (the intervals span 5 s to minutes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    plain = [c for c in cells if not c.get("errors")]
    intervals = lambda r: len({seconds(c["flush"]) for c in plain if c["rate"] == r})
    rates = sorted({c["rate"] for c in plain}, key=lambda r: -intervals(r))
    if rates:
        curve = sorted((c for c in plain if c["rate"] == rates[0]), key=lambda c: seconds(c["flush"]))
        cost = [c["total"] for c in curve]
        ax.plot(cost, [c["p99"] for c in curve], "o-", color="tab:blue", label=f"p99 lag, {rates[0]} lines/s")
        ax.plot(cost, [c["p50"] for c in curve], "s--", color="tab:blue", alpha=0.6,
                label=f"p50 lag, {rates[0]} lines/s")
        named = set()
        for c in curve:
            s = seconds(c["flush"])
            if s in named:
                continue
            named.add(s)
            ax.annotate(f"flush {s:g} s" + (" (default)" if c["flush"] == "default" else ""),
                        (c["total"], c["p99"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        others = [c for c in plain if c["rate"] != rates[0]]
        if others:
            ax.plot([c["total"] for c in others], [c["p99"] for c in others], "D", color="tab:green", mfc="none",
                    label="p99 lag at " + ", ".join(f"{c['rate']} lines/s flush {seconds(c['flush']):g} s"
                                                    for c in others))
    for c in (c for c in cells if c.get("errors")):
        ax.plot([c["total"]] * 2, [c["error_p50"], c["error_max"]], "r-", lw=2)
        ax.plot([c["total"]], [c["error_p50"]], "rv")
        ax.plot([c["total"]], [c["error_max"]], "r^")
        ax.annotate(f"an error every {c['errors']:g} s, flush {seconds(c['flush']):g} s:\n"
                    f"error lag p50 {c['error_p50']:.1f} s, max {c['error_max']:.1f} s",
                    (c["total"], c["error_max"]), textcoords="offset points", xytext=(6, 2), fontsize=8, color="red",
                    annotation_clip=False)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain_fmt)
        axis.set_minor_formatter(plain_fmt)
    ax.tick_params(axis="both", which="both", labelsize=8)
    ax.margins(x=0.2, y=0.1)
    ax.set_xlabel("AWS requests, USD per task-month (log scale)")
    ax.set_ylabel("lag, a line's write to CloudWatch Logs (s, log scale)")
    ax.set_title("logdrop: cost against lag by flush interval (make bench-cost)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default=os.environ.get(
        "BENCH_COST_CELLS", "1:default,1:5s,1:15s,1:30s,1:60s,1:120s,10:default,100:default"),
        help="comma-separated RATE:FLUSH[:ERROR_EVERY] (FLUSH `default` leaves LOGDROP_FLUSH_INTERVAL unset; "
             "ERROR_EVERY seconds between SEVERE events, whose lag is reported apart)")
    p.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_COST_SCALE", "1")),
                   help="shortens (<1) or lengthens every cell; 1 takes about 25 minutes in all")
    p.add_argument("--dynamodb", action="store_true", default=bool(os.environ.get("BENCH_COST_DYNAMODB")),
                   help="create a table and give the shipper LOGDROP_CHECKPOINT_TABLE")
    p.add_argument("--label", default=os.environ.get("BENCH_COST_LABEL", "current code"))
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "target" / "bench-cost.md")
    args = p.parse_args()
    args.min_window = 90 * args.scale
    args.periods = max(1, round(3 * args.scale))
    args.max_cell = max(60.0, 600 * args.scale)
    moto = os.environ["AWS_ENDPOINT_URL"]
    recorder = proxy.Recorder()
    urls = proxy.start(moto, ["sidecar", "shipper", "esm"], recorder)
    cells = []
    for i, cell in enumerate(args.cells.split(",")):
        rate, flush, *errors = cell.split(":")
        every = float(errors[0]) if errors else None
        print(f"== cell {i + 1}: {rate} lines/s, flush {flush}, an error every {every} s", flush=True)
        c = run_cell(i, float(rate) if "." in rate else int(rate), flush, args, moto, urls, recorder, every)
        print("  " + fmt_row(c), flush=True)
        cells.append(c)
    report(cells, args, args.out)
    return 0 if all(c["exact"] and not c["failures"] for c in cells) else 1


if __name__ == "__main__":
    raise SystemExit(main())
