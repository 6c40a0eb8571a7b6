"""Online garbage collection (docs/gc.md): ``collector`` and ``untagged`` (GC's side of the
protocol), ``job`` (the ``gc.run`` job kind). The writers' side lives in the registry layer,
:mod:`moorage.registry.gc_fence`, since every push path goes through it."""
