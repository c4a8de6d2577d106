"""eghn-md: E(n)-equivariant graph hierarchy networks as surrogates for protein molecular dynamics.

Layout (one concept per sub-package, imported in this order; ``tests/test_layering.py`` enforces it):

``errors`` → ``utils`` → ``io`` → ``graph`` → ``data`` → ``nn`` → ``models`` → ``train`` → ``rollout`` → ``export``
→ ``testing`` → ``benchmarks``

Errors name parameters, never command-line flags; long calls report to one :class:`eghn_md.utils.Progress` (silent
by default); the command line (``cli/``, never imported here) translates the one and draws the other.

Units inside the library are Å (length) and ps (time); conversions happen only at file boundaries.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
