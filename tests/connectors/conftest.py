"""The CLI runner fixtures of tests/cli, for the connector tests that go through the CLI; the
real etcd of tests/etcd and the cases of the connector contract suite."""

from tests.cli.conftest import kk, local_repo, make_kk  # noqa: F401
from tests.etcd.conftest import etcd_tools, fast_tmp, loaded, pki  # noqa: F401

from .contract_cases import exporter_case, file_tree, importer_case, objects  # noqa: F401
