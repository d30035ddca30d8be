"""Generators of the repository's generated files: run `make generate`."""
