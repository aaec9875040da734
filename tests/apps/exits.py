"""A test app: listens on APP_PORT (answering every request 404, as an app with no
subscriptions answers `GET /dapr/subscribe`), writes what it saw to a file, exits as told.

Argument 1: a file to write `DAPR_HTTP_PORT,DAPR_GRPC_PORT,APP_ID` and later `signal N`.
Argument 2: `exit:N` to exit with code N after 0.5 s, or `wait` to wait for a signal and
exit with 100 + its number.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

report = Path(sys.argv[1])
mode = sys.argv[2]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(os.environ["APP_PORT"])))
listener.listen()


def answer_404() -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


threading.Thread(target=answer_404, daemon=True).start()
report.write_text(f"{os.environ['DAPR_HTTP_PORT']},{os.environ['DAPR_GRPC_PORT']},{os.environ['APP_ID']}\n")


def on_signal(signum: int, frame: object) -> None:
    with report.open("a") as out:
        out.write(f"signal {signum}\n")
    sys.exit(100 + signum)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
if mode.startswith("exit:"):
    time.sleep(0.5)
    sys.exit(int(mode.split(":")[1]))
while True:
    time.sleep(0.1)
