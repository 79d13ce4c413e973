"""Where a callback may go: http(s), a public address, and so again at every attempt."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from core.errors import invalid
from core.settings import get_settings

MAX_URL_LENGTH = 2000


class CallbackRefused(ValueError):
    """The URL is not one the service will call (syntax, scheme, or where it points)."""


def split_url(url: str) -> tuple[SplitResult, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise CallbackRefused("contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CallbackRefused("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise CallbackRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("must not carry credentials: the signature authenticates calls")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def is_public(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified addresses
    (IPv4, IPv6, and IPv4 mapped into IPv6)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, refused unless every one is public (or the setting allows)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise CallbackRefused(f"names a host that does not resolve ({host})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise CallbackRefused(f"names a host that does not resolve ({host})")
    if not get_settings().webhook_allow_private:
        for address in addresses:
            if not is_public(address):
                raise CallbackRefused(
                    "points to a private, loopback, link-local or otherwise non-public "
                    f"address ({address})"
                )
    return addresses


def check_callback_url(url: str) -> str:
    """The URL if the service may call it; CallbackRefused saying why not."""
    _, host, port = split_url(url)
    resolve(host, port)
    return url


def validate_callback_url(raw: str) -> str:
    """callbackUrl of an upload, or a 400 naming it."""
    try:
        return check_callback_url(raw)
    except CallbackRefused as exc:
        raise invalid("callbackUrl", f"callbackUrl {exc}") from None
