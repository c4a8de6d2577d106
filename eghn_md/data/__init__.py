"""Datasets (HDF5), windowed samples and disjoint-union batching."""
