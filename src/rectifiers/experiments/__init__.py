"""Experiments: ``rectifiers reproduce`` (the paper's findings), ``rectifiers bench`` (zoo grid)."""
