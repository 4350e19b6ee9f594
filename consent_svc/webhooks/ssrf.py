"""Where outbound webhooks may go: a subscription's URL is checked when registered, and the addresses its host
resolves to are checked again when a delivery connects (DNS can change in between): the HTTP client resolves
names through CheckedResolver, so the address checked is the address used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from consent_svc.errors import InvalidInput
from consent_svc.exceptions import FieldError
from consent_svc.settings import Settings

# Cloud metadata services: never a webhook receiver, refused even where private networks are allowed.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """The URL may not be called; the message says why, in words a caller can act on."""


def parse(url: str, https_only: bool) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise UnsafeUrl(f"not a URL: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl("the scheme must be https")
    if https_only and parts.scheme != "https":
        raise UnsafeUrl("the scheme must be https (plain http only in local mode)")
    if not parts.hostname:
        raise UnsafeUrl("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in the URL are not accepted: receivers verify the signature instead")
    if parts.fragment:
        raise UnsafeUrl("a fragment is never sent: leave it out")
    return parts


# IPv6 forms that carry an IPv4 address in their last 32 bits, and reach it: NAT64's well-known prefix
# (RFC 6052; on an IPv6-only network with DNS64 it is how IPv4 hosts are reached) and IPv4-compatible addresses.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Local-use NAT64 (RFC 8215): where the IPv4 address sits depends on the operator's prefix length, so it cannot
# be read out; treated as private.
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def reached(address: Address) -> Address:
    """The IPv4 address an IPv6 address leads to, where it embeds one (mapped, 6to4, NAT64, compatible)."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or address in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def allowed(address: Address, allow_private: bool) -> bool:
    address = reached(address)
    if address in METADATA:
        return False
    if address.is_global and not (isinstance(address, ipaddress.IPv6Address) and address in LOCAL_NAT64):
        return True
    # Loopback, private, link-local, shared (CGNAT) ranges: for local tests only. Never unspecified/multicast.
    return allow_private and not (address.is_unspecified or address.is_multicast)


def check(host: str, found: list[Address], allow_private: bool) -> None:
    """UnsafeUrl unless every address is allowed (a name that answers a public and a private one is refused)."""
    refused = [a for a in found if not allowed(a, allow_private)]
    if refused or not found:
        raise UnsafeUrl(
            f"the host `{host}` resolves to {refused[0] if refused else 'nothing'}: loopback, private, link-local "
            "and metadata addresses are refused (CONSENT_SVC_WEBHOOK_ALLOW_PRIVATE_NETWORKS=1 allows private ones)"
        )


def literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(parts: SplitResult, allow_private: bool) -> list[Address]:
    """The URL's host's addresses, all of them allowed; UnsafeUrl if it does not resolve or any is refused."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = literal(host)
    if address is not None:
        found = [address]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise UnsafeUrl(f"the host `{host}` does not resolve") from None
        found = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    check(host, found, allow_private)
    return found


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve where webhooks may not go. (aiohttp does not resolve an
    IP literal: the sender checks those itself.)"""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        check(host, [ipaddress.ip_address(r["host"].split("%")[0]) for r in found], self.allow_private)
        return found

    async def close(self) -> None:
        await self._resolver.close()


async def checked_url(url: str, settings: Settings) -> None:
    """A subscriber's URL checked at registration: 422 naming what is wrong with it."""
    try:
        await resolve(parse(url, https_only=settings.production), settings.webhook_allow_private_networks)
    except UnsafeUrl as exc:
        raise InvalidInput(f"url: {exc}", errors=[FieldError("url", str(exc))]) from None
