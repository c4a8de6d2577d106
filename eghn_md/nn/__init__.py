"""Equivariant building blocks: scatter helpers, MLPs, EMMP, E-Pool, E-UpPool."""
