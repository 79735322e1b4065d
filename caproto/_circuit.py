"""Placeholder: being written (see caproto/README.md)."""
__all__ = ()
