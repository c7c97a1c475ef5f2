"""Functional forms of the ``rectifiers.nn`` layers (``rectifiers.nn.functional.prelu``)."""

from rectifiers.nn.prelu import prelu

__all__ = ["prelu"]
