"""Orbax save/restore/resume, import of official PyTorch weights, export."""
