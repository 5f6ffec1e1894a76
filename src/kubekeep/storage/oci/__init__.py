"""The OCI registry backend (``oci://REGISTRY/REPOSITORY``): ``backend`` maps objects to
tagged artifacts, ``tags`` names to tags, ``transport`` speaks HTTP with the registry's
authentication, ``credentials`` finds what to authenticate with. docs/storage.md."""

from kubekeep.storage.oci.backend import OciBackend

__all__ = ["OciBackend"]
