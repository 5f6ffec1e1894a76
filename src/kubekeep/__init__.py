"""kubekeep: back up Kubernetes clusters into a deduplicated, encrypted snapshot repository."""

__version__ = "0.1.0"
