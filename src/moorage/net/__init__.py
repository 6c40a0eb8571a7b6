"""Outbound network rules every component shares: which CAs to trust, which addresses to refuse.

A leaf package (it imports nothing else of Moorage), so storage drivers, identity (OIDC, LDAP),
replication, the proxy cache and webhooks can all ask it without any layering exception.
"""

from moorage.net.tls import TrustStore, TrustStoreError

__all__ = ["TrustStore", "TrustStoreError"]
