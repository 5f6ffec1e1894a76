"""The repository engine: format, crypto, chunking, packs, index, trees and snapshots.

It knows nothing of Kubernetes; sources and destinations reach it through
``kubekeep.engine.entries`` (entries, importers, exporters) and storage through
``kubekeep.storage.base.Backend``.
"""
