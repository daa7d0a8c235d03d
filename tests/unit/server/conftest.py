"""Fixtures of the server tests (see tlskit)."""

from tests.unit.server.tlskit import ca, ca_file, pairs  # noqa: F401 - pytest fixtures
