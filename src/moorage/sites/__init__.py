"""Several sites on one database: each site its own storage, the database records who holds what.

See docs/multi-site.md. :class:`Sites` knows every site's storage and the ``blob_sites`` rows;
:class:`SiteBlobs` serves a read at a site that lacks the bytes from a site that has them;
:class:`SiteCopier` is the job that copies a blob to a site, once per blob and site.
"""

from moorage.sites.blobs import SiteBlobs
from moorage.sites.copier import SiteCopier, copy_kind
from moorage.sites.model import Sites, SiteUnavailable

__all__ = ["SiteBlobs", "SiteCopier", "SiteUnavailable", "Sites", "copy_kind"]
