"""eghn-md: E(n)-equivariant graph hierarchy networks as surrogates for protein molecular dynamics.

Layout (one concept per sub-package, imported in this order):

``io`` → ``graph`` → ``data`` → ``nn`` → ``models`` → ``train`` → ``rollout`` → ``export``

Units inside the library are Å (length) and ps (time); conversions happen only at file boundaries.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
