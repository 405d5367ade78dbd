"""The two reference consumers of the ingest benchmark, each run as its own process.

- `count`: a paho subscriber that only counts (QoS 1, paho acknowledges each message when the callback returns).
  No consumer can beat it with paho; it is the yardstick for figure (a).
- `naive`: the ingester nobody should write: paho, `json.loads`, and one INSERT per reading in autocommit mode,
  inside the message callback (so each message is acknowledged after its rows are in). Figure (c).

Both print `ready` once subscribed and, when they have seen `--count` messages (count) or readings (naive), one JSON
line with the wall-clock time of the first and the last.

    python -m benchmarks.ingest._consumers count --port 1883 --count 100000
    python -m benchmarks.ingest._consumers naive --port 1883 --count 10000 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.ingest._load import PREFIX
from livinglab.domain import QUANTITIES
from livinglab.embedded import LOOPBACK

_INSERT = (
    "INSERT INTO readings (sensor_key, quantity, ts, value, received_at) VALUES (%s, %s, to_timestamp(%s), %s, now())"
)


def _client(args: argparse.Namespace, on_message: Any, subscribed: threading.Event) -> mqtt.Client:
    client_id = f"bench-{args.mode}-{os.getpid()}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/+/+/+", qos=1)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = args.receive_maximum
    client.connect(LOOPBACK, args.port, clean_start=True, properties=properties)
    return client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["count", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True, help="messages (count) or readings (naive) to wait for")
    parser.add_argument("--receive-maximum", type=int, default=4000)
    parser.add_argument("--database-url", help="naive only")
    args = parser.parse_args()

    done = threading.Event()
    subscribed = threading.Event()
    times: list[float] = []
    seen = 0

    if args.mode == "count":

        def on_message(_client: mqtt.Client, _userdata: Any, _msg: mqtt.MQTTMessage) -> None:
            nonlocal seen
            seen += 1
            if seen == 1:
                times.append(time.time())
            if seen == args.count:
                times.append(time.time())
                done.set()

    else:
        conn = psycopg.connect(args.database_url, autocommit=True)
        keys = dict(conn.execute("SELECT sensor_id, sensor_key FROM sensors").fetchall())

        def on_message(_client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
            nonlocal seen
            if not times:
                times.append(time.time())
            sensor_key = keys[msg.topic.rsplit("/", 1)[1]]
            records = json.loads(msg.payload)
            base_time = records[0].get("bt", 0.0)
            for record in records[1:]:
                quantity = QUANTITIES[record["n"]].code
                conn.execute(_INSERT, (sensor_key, quantity, base_time + record.get("t", 0.0), record["v"]))
                seen += 1
            if seen >= args.count:
                times.append(time.time())
                done.set()

    client = _client(args, on_message, subscribed)
    client.loop_start()
    if not subscribed.wait(30):
        print("not subscribed", file=sys.stderr)
        return 1
    print("ready", flush=True)
    done.wait()
    print(json.dumps({"first": times[0], "last": times[-1], "seen": seen}), flush=True)
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
