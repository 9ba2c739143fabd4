"""Test helpers, in one place: synthetic datasets and images, certificates."""
