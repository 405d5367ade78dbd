"""The deliverer (`livinglab notify`): drains the durable outbox of alarm notifications to webhooks, MQTT and email.

Layout: `outbox` claims and records deliveries in PostgreSQL; `_webhook`, `_mqtt` and `_email` talk to the
receivers; `service` runs the loop. The channel model and the signature are the core's (`livinglab.notifications`).
"""

from notify.errors import DeliveryError, NotifyError
from notify.service import Deliverer
from notify.settings import NotifySettings

__all__ = ["Deliverer", "DeliveryError", "NotifyError", "NotifySettings"]
