"""The proxy cache: projects bound to an upstream endpoint, and the registry-mirror mode (docs/proxy-cache.md)."""

from moorage.proxy.service import ProxyCache

__all__ = ["ProxyCache"]
