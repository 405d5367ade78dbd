"""Broker credentials: devices limited to their own topic, city gateways to their city's topics (Mosquitto's
dynamic security plugin), issued by `livinglab mqtt`. See `livinglab.brokeraccess.dynsec` for the rules."""

from livinglab.brokeraccess.dynsec import BrokerAccessError, DynsecDocument, PasswordHash

__all__ = ["BrokerAccessError", "DynsecDocument", "PasswordHash"]
