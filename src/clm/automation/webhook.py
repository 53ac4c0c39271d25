"""Outgoing webhooks: HMAC-SHA256-signed POSTs to public addresses only.

Safety (SSRF): the host is resolved once, every resolved address is checked with
`ipaddress` (loopback, private, link-local, reserved, multicast, unspecified, shared
100.64/10, IPv4-mapped/6to4 forms of those are refused), and the connection goes to an
address that was checked (no second lookup an attacker's DNS could answer differently).
Redirects are not followed; a 3xx is a failure. Connect and read have a timeout.

Signature: header `X-CLM-Signature: sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>")
with `X-CLM-Timestamp` (Unix seconds); `X-CLM-Delivery` is the step key, the same on a
resumed step, so the receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from clm.core.errors import ValidationFailed

Resolver = Callable[[str, int], list[str]]
MAX_RESPONSE = 64 * 1024
SHARED_NAT = ipaddress.ip_network("100.64.0.0/10")


class WebhookRefused(Exception):
    """The URL may not be called (bad scheme, non-public address)."""


@dataclass
class Response:
    status: int
    body: bytes = b""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def address_allowed(text: str) -> bool:
    """Whether an IP address is a public unicast address a webhook may reach."""
    try:
        ip = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not address_allowed(str(embedded)):
            return False
    if isinstance(ip, ipaddress.IPv4Address) and ip in SHARED_NAT:
        return False
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                or ip.is_multicast or ip.is_unspecified or not ip.is_global)


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a well-formed http(s) URL, else ValidationFailed."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("A webhook URL is http:// or https:// with a host.", field="url")
    if parts.username or parts.password:
        raise ValidationFailed("A webhook URL may not carry a user or password.", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationFailed("The webhook URL's port is not valid.", field="url") from None
    host = parts.hostname
    try:  # a literal address is checked now, not only at send time
        ipaddress.ip_address(host)
        if not address_allowed(host):
            raise ValidationFailed("Webhooks may not call loopback, private or reserved "
                                   "addresses.", field="url", code="address_refused")
    except ValueError:
        if host in ("localhost",) or host.endswith((".localhost", ".local", ".internal")):
            raise ValidationFailed("Webhooks may not call local host names.", field="url",
                                   code="address_refused") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def resolve_public(host: str, port: int, resolver: Resolver) -> str:
    """One checked address of `host`; refuses if ANY resolved address is not public."""
    try:
        addresses = resolver(host, port)
    except OSError as exc:
        raise WebhookRefused(f"Cannot resolve {host}: {exc}") from None
    if not addresses:
        raise WebhookRefused(f"{host} has no address.")
    bad = [a for a in addresses if not address_allowed(a)]
    if bad:
        raise WebhookRefused(f"{host} resolves to a non-public address ({bad[0]}); refused.")
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed, already-checked address, with SNI and certificate check for `host`."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def http_transport(*, scheme: str, host: str, address: str, port: int, path: str,
                   headers: dict[str, str], body: bytes, timeout: float) -> Response:
    """POST through a connection pinned to `address`; never follows a redirect."""
    cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    conn = cls(host, address, port, timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, resp.read(MAX_RESPONSE))
    finally:
        conn.close()


def deliver(*, url: str, secret: str, body: bytes, delivery_id: str, timestamp: int,
            timeout: float, resolver: Resolver | None = None,
            transport: Callable[..., Response] | None = None) -> Response:
    """Sign and POST `body`; raises WebhookRefused for a refused destination, OSError and
    http.client errors for network failures."""
    try:
        scheme, host, port, path = check_url(url)
    except ValidationFailed as exc:
        raise WebhookRefused(exc.message) from None
    address = resolve_public(host, port, resolver or system_resolver)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "CLM-Webhook/1",
        "X-CLM-Timestamp": str(timestamp),
        "X-CLM-Signature": sign(secret, timestamp, body),
        "X-CLM-Delivery": delivery_id,
    }
    return (transport or http_transport)(scheme=scheme, host=host, address=address, port=port,
                                         path=path, headers=headers, body=body,
                                         timeout=timeout)
