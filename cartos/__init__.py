"""cartos: the software that knows what is in a smart cart's basket."""

__version__ = "0.1.0"
