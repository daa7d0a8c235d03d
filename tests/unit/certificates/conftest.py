"""Fixtures of the certificate tests (see planning)."""

from tests.unit.certificates.planning import fresh, old  # noqa: F401 - pytest fixtures
