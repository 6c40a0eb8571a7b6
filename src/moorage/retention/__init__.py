"""Tag retention: per-project policies that remove what their rules do not keep (docs/lifecycle.md).

``rules`` parses and checks Harbor's policy shape, ``evaluate`` is the pure decision,
``service`` stores policies and runs them as ``retention.run`` jobs, ``job`` is the handler.
"""
