"""The CLI runner fixtures of tests/cli, for the connector tests that go through the CLI."""

from tests.cli.conftest import kk, local_repo, make_kk  # noqa: F401
