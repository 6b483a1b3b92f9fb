"""Prompt sets: taxonomy, loading, the official data, augmentation, the published table."""
