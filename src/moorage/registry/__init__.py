"""Domain services of the registry: blobs, uploads, manifests, tags, referrers. No HTTP types here."""
