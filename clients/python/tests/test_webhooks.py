"""Webhooks from a real `reins serve` to a receiver in this process, checked with
`reins.webhooks.verify`: the helper docs/guardrails.md shows."""

from __future__ import annotations

import http.server
import json
import tempfile
import threading
import time
from pathlib import Path

from reins.webhooks import verify

from .conftest import start

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_standard_webhooks_example_verifies_and_tampering_does_not() -> None:
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    assert verify(SECRET, headers, body, now=1614265330)
    assert not verify(SECRET, headers, b'{"test": 2432232315}', now=1614265330)
    assert not verify(SECRET, {**headers, "webhook-id": "msg_other"}, body, now=1614265330)
    assert not verify(SECRET, headers, body, now=1614265330 + 301), "too old: a replay"
    assert not verify(SECRET, {"webhook-id": "x"}, body), "headers missing"


def test_a_kill_switch_reaches_a_receiver_signed() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            received.append((dict(self.headers), self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "secret"
        secret.write_text(SECRET)
        config = Path(tmp) / "reins.toml"
        config.write_text(
            "[[webhooks]]\n"
            'name = "ops"\n'
            f'url = "http://127.0.0.1:{httpd.server_address[1]}/hook"\n'
            'events = ["killswitch_engaged"]\n'
            f'secret_file = "{secret}"\n'
        )
        server = start(Path(tmp) / "data", config)
        try:
            operator = server.mint("ops", roles="admin,operator")
            r = server.post(
                "/v1/killswitch",
                operator,
                {"scope": {}, "reason": "webhook test", "drill": True},
            )
            assert r.status_code == 201, r.text
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                time.sleep(0.05)
            assert received, "no webhook arrived"
            headers, body = received[0]
            assert verify(SECRET, headers, body)
            assert not verify(SECRET, headers, body.replace(b"webhook test", b"webhook tost"))
            message = json.loads(body)
            assert message["type"] == "killswitch_engaged"
            assert "webhook test" in message["text"]
        finally:
            server.process.terminate()
            server.process.wait(timeout=20)
            httpd.shutdown()
