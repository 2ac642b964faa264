"""The push service in PocketKeyKit's end-to-end tests (EndToEndTests.swift): a webhook the
relay POSTs a phone's wake-ups to (`pocketkey-relay --webhook-allow`), standing in for APNs.

Prints `listening on 127.0.0.1:PORT` once it accepts connections, then `push: <body>` for every
POST (the JSON the relay sends, `{"v":1,"w":"<wake id>"}`), which the test hands to
`PocketKeyModel.handlePush` as the app delegate would hand over a notification's payload.
Answers 200 at once: the relay only needs to know the push was accepted."""

from __future__ import annotations

import http.server


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print("push: " + body.decode("utf-8", "replace"), flush=True)

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        pass


def main() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), Sink)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
