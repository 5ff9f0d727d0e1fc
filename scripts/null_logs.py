#!/usr/bin/env python3
"""A stand-in CloudWatch Logs endpoint for benchmarks: accepts every call,
stores nothing, and counts PutLogEvents calls, events and payload bytes (as
the service counts them: message UTF-8 bytes + 26 per event). GET /stats
returns the counts. Loopback only."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {"calls": 0, "events": 0, "bytes": 0, "full_calls": 0}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.reply(200, json.dumps(STATS).encode(), "application/json")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("X-Amz-Target", "").endswith("PutLogEvents"):
            events = json.loads(body).get("logEvents", [])
            size = sum(len(e["message"].encode()) + 26 for e in events)
            STATS["calls"] += 1
            STATS["events"] += len(events)
            STATS["bytes"] += size
            if size >= 0.9 * 1048576 or len(events) >= 9000:
                STATS["full_calls"] += 1
            payload = b'{"nextSequenceToken":"0"}'
        else:
            payload = b"{}"
        self.reply(200, payload, "application/x-amz-json-1.1")

    def reply(self, code, payload, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
