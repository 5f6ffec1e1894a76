"""Simulated node-side parts of a CSI driver, for tests of kubekeep's volumes layer.

The test machines have no kubelet and no CSI driver: :class:`SimCSI` adds a node whose kubelet
runs pods as namespaced local processes (so the helper agent really runs, read-only mounts and
dropped capabilities included), and the provisioner and snapshot controller of a hostpath-like
driver. Everything talks to the real test apiserver; see testenv/README.md. The node is tainted
(``TAINT_KEY``): pods run there only if they tolerate it (``TOLERATION``), so other tests' pods
keep to kwok's nodes.
"""

from testenv.simcsi.node import TAINT_KEY, TOLERATION
from testenv.simcsi.simulation import CRASH_IMAGE, NOSNAP_STORAGE_CLASS, SHELL_IMAGE, SimCSI

__all__ = ["CRASH_IMAGE", "NOSNAP_STORAGE_CLASS", "SHELL_IMAGE", "TAINT_KEY", "TOLERATION", "SimCSI"]
