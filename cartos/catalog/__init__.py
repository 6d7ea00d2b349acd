"""The store catalogue: SKUs, their reference embeddings and what is derived from them.

:class:`CatalogStore` keeps everything in one versioned SQLite file;
:func:`read_manifest` reads the CSV a retailer exports to describe its
reference images.
"""

from cartos.catalog.errors import (
    CatalogError,
    CatalogStateError,
    ManifestError,
    UnknownSkuError,
)
from cartos.catalog.manifest import Manifest, ManifestProblem, ManifestRow, read_manifest
from cartos.catalog.records import (
    ACTIVE,
    DISCONTINUED,
    SKU_STATUSES,
    ExemplarSet,
    SkuRecord,
    VersionRow,
)
from cartos.catalog.store import PROTOTYPE_LEVELS, SCHEMA_VERSION, CatalogStore

__all__ = [
    "ACTIVE",
    "DISCONTINUED",
    "PROTOTYPE_LEVELS",
    "SCHEMA_VERSION",
    "SKU_STATUSES",
    "CatalogError",
    "CatalogStateError",
    "CatalogStore",
    "ExemplarSet",
    "Manifest",
    "ManifestError",
    "ManifestProblem",
    "ManifestRow",
    "SkuRecord",
    "UnknownSkuError",
    "VersionRow",
    "read_manifest",
]
