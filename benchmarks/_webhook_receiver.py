"""A webhook receiver in a process of its own, for benchmarks: an ASGI app under uvicorn on 127.0.0.1 that answers
every POST with 204 and appends `<received_at>\t<delivery id>\t<event>\t<sensor_id>` per request to a file.

    python -m benchmarks._webhook_receiver PORT FILE
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uvicorn


def make_app(path: str) -> Any:
    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the process's life

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received_at = time.time()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            payload = json.loads(body)
            event, sensor_id = payload.get("event", ""), (payload.get("alarm") or {}).get("sensor_id", "")
        except ValueError:
            event, sensor_id = "", ""
        out.write(f"{received_at:.6f}\t{headers.get('x-livinglab-delivery', '')}\t{event}\t{sensor_id}\n")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(make_app(path), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
