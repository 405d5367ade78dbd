"""Webhook deliveries: POST of the exact stored body, signed, with a deadline."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

import httpx

import livinglab
from livinglab.notifications import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookConfig, sign
from notify.errors import DeliveryError
from notify.settings import Network


class WebhookSender:
    """POSTs bodies to webhook receivers. A 2xx answer is acceptance; anything else fails the attempt.

    With allowed networks configured, the receiver's name is resolved here, every address it resolves to must lie in
    them, and the request goes to the address that was checked (the name still goes in `Host` and in TLS's SNI and
    certificate check), so a name that resolves differently a moment later cannot lead elsewhere.
    """

    def __init__(self, *, timeout_s: float, allowed: tuple[Network, ...] = ()) -> None:
        self.timeout_s = timeout_s
        self.allowed = allowed
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            headers={"User-Agent": f"livinglab/{livinglab.__version__}"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, config: WebhookConfig, delivery_id: str, event: str, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: delivery_id,
            SIGNATURE_HEADER: sign(config.secret, body),
            "X-Livinglab-Event": event,
        }
        # (url, Host header, TLS server name) to try in order: the url itself, or each checked address of its host.
        targets: list[tuple[str, str | None, str | None]] = [(config.url, None, None)]
        if self.allowed:
            targets = await self._pinned(config.url)
        for number, (url, host_header, sni) in enumerate(targets, start=1):
            pinned = {"Host": host_header} if host_header else {}
            extensions = {"sni_hostname": sni} if sni else {}
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await self._client.post(
                        url, content=body, headers=headers | pinned, extensions=extensions
                    )
            except (TimeoutError, httpx.TimeoutException):
                raise DeliveryError(f"no answer within {self.timeout_s:g} s") from None
            except httpx.ConnectError as exc:
                if number < len(targets):
                    continue  # the name's next address
                raise DeliveryError(f"cannot connect: {exc or type(exc).__name__}") from exc
            except httpx.HTTPError as exc:
                raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
            if not 200 <= response.status_code < 300:
                raise DeliveryError(f"the receiver answered HTTP {response.status_code}")
            return

    async def _pinned(self, url: str) -> list[tuple[str, str | None, str | None]]:
        """(url to a checked address, Host header, TLS server name) for each address of `url`'s host, in the
        resolver's order; DeliveryError when one of them lies outside the allowed networks."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DeliveryError(f"cannot resolve {host!r}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
        refused = [a for a in addresses if not any(a in network for network in self.allowed)]
        if not addresses or refused:
            raise DeliveryError(
                f"{host!r} resolves to {refused[0] if refused else 'nothing'},"
                " outside LIVINGLAB_NOTIFY_ALLOWED_NETWORKS"
            )
        userinfo, _, host_header = parts.netloc.rpartition("@")
        targets: list[tuple[str, str | None, str | None]] = []
        for address in addresses:
            literal = f"[{address}]" if address.version == 6 else str(address)
            netloc = (f"{userinfo}@" if userinfo else "") + (f"{literal}:{parts.port}" if parts.port else literal)
            pinned_url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
            targets.append((pinned_url, host_header, host if parts.scheme == "https" else None))
        return targets
