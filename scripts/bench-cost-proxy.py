"""A counting HTTP proxy for the cost benchmark (scripts/bench-cost.py loads it).

Each role (sidecar, shipper, the SQS poller standing in for Lambda's event
source mapping) gets its own loopback port; every request is forwarded to the
emulator unchanged and recorded as (time, role, service, operation, kind,
units): the service from the SigV4 credential scope, the operation from
X-Amz-Target, the SQS query Action, or the S3 method and path. S3 object
requests are told apart by key: `chunk` under logs/, `checkpoint` otherwise.
DynamoDB requests carry their capacity units (write: 1 per KB of item, read:
1 per 4 KB, strongly consistent), computed from the item as DynamoDB sizes it.
"""

import base64
import http.client
import http.server
import json
import math
import re
import threading
import time
import urllib.parse

SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.records = []

    def add(self, rec):
        with self.lock:
            self.records.append(rec)

    def take(self):
        """Everything recorded so far, and start afresh."""
        with self.lock:
            out, self.records = self.records, []
        return out


def dynamodb_value_bytes(v):
    (t, x), = v.items()
    if t == "S":
        return len(x.encode())
    if t == "B":
        return len(base64.b64decode(x))
    if t == "N":
        return len(x.lstrip("-").replace(".", "")) // 2 + 1
    if t in ("BOOL", "NULL"):
        return 1
    if t in ("SS", "NS", "BS"):
        return sum(dynamodb_value_bytes({t[0]: e}) for e in x)
    if t == "L":
        return 3 + sum(dynamodb_value_bytes(e) + 1 for e in x)
    if t == "M":
        return 3 + sum(len(k.encode()) + dynamodb_value_bytes(e) + 1 for k, e in x.items())
    return len(json.dumps(x))


def item_bytes(item):
    return sum(len(k.encode()) + dynamodb_value_bytes(v) for k, v in (item or {}).items())


def classify(method, path, headers, body):
    """(service, operation, kind, S3 key) of one request."""
    m = SCOPE.search(headers.get("Authorization", ""))
    service = m.group(1) if m else "unknown"
    target = headers.get("X-Amz-Target")
    if target:
        return service, target.split(".")[-1], "", ""
    if service == "sqs":
        action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
        return service, action, "", ""
    if service != "s3":
        return service, method, "", ""
    url = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    parts = url.path.lstrip("/").split("/", 1)
    key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
    kind = ("chunk" if key.startswith("logs/") else "checkpoint") if key else ""
    if not key:
        op = {"GET": "ListObjects", "PUT": "CreateBucket", "HEAD": "HeadBucket"}.get(method, method)
        if "notification" in query:
            op = method.title() + "BucketNotification"
        return service, op, "", ""
    op = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject",
          "DELETE": "DeleteObject", "POST": "PostObject"}.get(method, method)
    return service, op, kind, key


def units(service, op, req_body, resp_body):
    if service != "dynamodb":
        return 0
    try:
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            return max(1, math.ceil(item_bytes(json.loads(req_body).get("Item")) / 1024))
        if op == "GetItem":
            return max(1, math.ceil(item_bytes(json.loads(resp_body).get("Item")) / 4096))
    except (ValueError, AttributeError):
        pass
    return 1


def handler_for(role, upstream, recorder):
    host, port = upstream
    local = threading.local()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def forward(self):
            at = time.time()
            body = self.read_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
            headers["Content-Length"] = str(len(body))
            for attempt in range(2):
                conn = getattr(local, "conn", None) or http.client.HTTPConnection(host, port, timeout=120)
                local.conn = conn
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in headers.items():
                        conn.putheader(k, v)
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    data = resp.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt:
                        raise
            service, op, kind, key = classify(self.command, self.path, self.headers, body)
            recorder.add({"t": at, "role": role, "service": service, "op": op, "kind": kind, "key": key,
                          "status": resp.status, "units": units(service, op, body, data),
                          "ms": (time.time() - at) * 1000})
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(k, v)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            else:
                self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    return Handler


def start(upstream_url, roles, recorder):
    """Starts one proxy per role on a free loopback port; returns {role: url}."""
    u = urllib.parse.urlsplit(upstream_url)
    upstream = (u.hostname, u.port)
    urls = {}
    for role in roles:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(role, upstream, recorder))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        urls[role] = f"http://127.0.0.1:{server.server_address[1]}"
    return urls
