"""metavec: a Python client for the metavec multi-vector database.

    import numpy as np
    from metavec import Client

    c = Client("127.0.0.1:50051")
    c.create_collection("docs", dim=384, doc_vectors=64, query_vectors=16)
    c.upsert("docs", ["a", "b"], np.random.rand(2, 64, 384).astype(np.float32))
    hits = c.search("docs", np.random.rand(16, 384), budget=(4, 8), k=10)   # or budget="4x8"
"""

from .client import (
    DEFAULT_BUDGET,
    AlreadyExists,
    Client,
    Document,
    Hit,
    InvalidArgument,
    MetavecError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SearchResult,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "DEFAULT_BUDGET",
    "AlreadyExists",
    "Client",
    "Document",
    "Hit",
    "InvalidArgument",
    "MetavecError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "SearchResult",
    "Unauthenticated",
    "Unavailable",
]
__version__ = "0.1.0"
