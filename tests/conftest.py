"""Fixtures shared by every test folder: the local S3 server (tests.support) and, once the
harness is in place, the local Kubernetes control plane (testenv)."""

pytest_plugins = ["tests.support.s3_fixtures"]
