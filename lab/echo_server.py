"""A real HTTP + HTTPS echo server used as the lab's service-proxy backend (runs inside a network namespace).

Every response is JSON describing the request: the cluster it belongs to, scheme, method, path, query, headers, body.
Usage: echo_server.py --cluster NAME --bind IP --http PORT --https PORT --cert FILE --key FILE
"""
from __future__ import annotations

import argparse
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(cluster: str, scheme: str):
    class Echo(BaseHTTPRequestHandler):
        server_version = "kubegate-lab-echo/1"
        protocol_version = "HTTP/1.1"

        def _echo(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            path, _, query = self.path.partition("?")
            payload = {
                "cluster": cluster, "scheme": scheme, "method": self.command, "path": path, "query": query,
                "headers": {k: v for k, v in self.headers.items()}, "body": body,
            }
            if path.rstrip("/").endswith("/status/418"):
                code = 418
            else:
                code = 200
            data = (json.dumps(payload, sort_keys=True) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo

        def log_message(self, fmt, *args):  # one line per request on stderr (the lab's log file)
            super().log_message(fmt, *args)

    return Echo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--http", type=int, default=8080)
    ap.add_argument("--https", type=int, default=8443)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    plain = ThreadingHTTPServer((args.bind, args.http), make_handler(args.cluster, "http"))
    secure = ThreadingHTTPServer((args.bind, args.https), make_handler(args.cluster, "https"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    secure.socket = ctx.wrap_socket(secure.socket, server_side=True)
    threading.Thread(target=secure.serve_forever, daemon=True).start()
    plain.serve_forever()


if __name__ == "__main__":
    main()
