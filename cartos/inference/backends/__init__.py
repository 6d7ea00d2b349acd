"""One module per inference runtime; each registers itself with the registry."""
