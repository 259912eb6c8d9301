"""The metavec client: numpy arrays in and out, typed errors from gRPC statuses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import grpc
import numpy as np

from .v1 import metavec_pb2 as pb
from .v1 import metavec_pb2_grpc as rpc

Budget = tuple[int, int]
"""(r_q, r_c): query vectors and document vectors a search uses; "4x8" is accepted too."""

DEFAULT_BUDGET: Budget = (1, 1)
"""The budget `search` uses when none is given: the coarsest, vector 0 of the query against
vector 0 of each document. Pass a deeper trained budget, e.g. (4, 8), for quality."""


class MetavecError(Exception):
    """A request the server refused or could not serve: `code` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(MetavecError):
    """Bad input; the message names the field."""


class NotFound(MetavecError):
    """Unknown collection or snapshot."""


class AlreadyExists(MetavecError):
    """A collection or snapshot of that name exists."""


class Unauthenticated(MetavecError):
    """Missing or wrong API key."""


class PermissionDenied(MetavecError):
    """A read-only key asked for a write or an admin operation."""


class ResourceExhausted(MetavecError):
    """A message over the server's size limit, or no space left for writes."""


class Unavailable(MetavecError):
    """The server (or the collection's writer) cannot take the request now; retry later."""


_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def _raise(e: grpc.RpcError) -> MetavecError:
    code = e.code()
    return _ERRORS.get(code, MetavecError)(code, e.details() or "")


@dataclass
class Document:
    """A stored document as `scroll` returns it: vectors and payload only when asked for."""

    id: str
    vectors: Optional[np.ndarray] = None
    payload: Optional[dict] = None


@dataclass
class Hit:
    id: str
    score: float
    payload: Optional[dict] = None


@dataclass
class SearchResult:
    hits: list[Hit]
    budget: Budget
    """The budget the server used (the chosen one under a latency target)."""
    stats: dict = field(default_factory=dict)


def _vectors(a: np.ndarray, what: str) -> pb.Vectors:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D [count, dim], got shape {a.shape}")
    if a.dtype == np.float16:
        # Half floats travel as their raw bytes: half the size of f32 on the wire.
        raw = np.ascontiguousarray(a, dtype="<f2").tobytes()
        return pb.Vectors(count=a.shape[0], dim=a.shape[1], f16=raw)
    a = np.ascontiguousarray(a, dtype=np.float32)
    return pb.Vectors(count=a.shape[0], dim=a.shape[1], values=a.ravel().tolist())


def _budget(b: Any, what: str = "budget") -> pb.Budget:
    """(r_q, r_c) or "RQxRC" as the wire's Budget, with errors that say what was wrong."""
    if isinstance(b, str):
        parts = b.lower().replace(",", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f'{what} {b!r}: expected "RQxRC", e.g. "4x8", or a tuple (4, 8)')
        return pb.Budget(r_q=int(parts[0]), r_c=int(parts[1]))
    if isinstance(b, (tuple, list)) and len(b) == 2:
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in b):
            raise TypeError(f"{what} {b!r}: r_q and r_c must be integers")
        return pb.Budget(r_q=int(b[0]), r_c=int(b[1]))
    raise TypeError(f'{what} must be a tuple (r_q, r_c) or a string "RQxRC", got {type(b).__name__} {b!r}')


def _ids(ids: Any, what: str = "ids") -> list[str]:
    """Ids as a list of strings; anything else is a TypeError naming the entry."""
    if isinstance(ids, str):
        raise TypeError(f"{what} must be a sequence of strings, not one string {ids!r}")
    out = list(ids)
    for i, x in enumerate(out):
        if not isinstance(x, str):
            raise TypeError(
                f"{what}[{i}] is {type(x).__name__} {x!r}: ids are strings (e.g. str({x!r}))"
            )
    return out


def _payload(p: Any) -> str:
    if p is None:
        return ""
    return p if isinstance(p, str) else json.dumps(p)


class Client:
    """A connection to one metavec server.

    `addr` is host:port. `api_key` is sent as `authorization: Bearer <key>`. `tls_ca` (PEM bytes
    or a path) turns on TLS and trusts that CA. `timeout` (seconds) applies to every call.
    """

    def __init__(
        self,
        addr: str = "127.0.0.1:50051",
        *,
        api_key: Optional[str] = None,
        tls_ca: Union[bytes, str, None] = None,
        timeout: Optional[float] = 60.0,
        max_message_bytes: int = 64 << 20,
    ):
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if tls_ca is not None:
            pem = tls_ca if isinstance(tls_ca, bytes) else open(tls_ca, "rb").read()
            self._channel = grpc.secure_channel(
                addr, grpc.ssl_channel_credentials(root_certificates=pem), options
            )
        else:
            self._channel = grpc.insecure_channel(addr, options)
        self._metadata = [("authorization", f"Bearer {api_key}")] if api_key else None
        self._timeout = timeout
        self._collections = rpc.CollectionsStub(self._channel)
        self._documents = rpc.DocumentsStub(self._channel)
        self._search = rpc.SearchStub(self._channel)
        self._admin = rpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _raise(e) from None

    # Collections

    def create_collection(
        self,
        name: str,
        dim: int,
        doc_vectors: int,
        query_vectors: int,
        *,
        budgets: Optional[Sequence[Budget]] = None,
        dtype: str = "",
        candidate_index: str = "",
        index_vectors: int = 0,
    ) -> dict:
        """Creates a collection; `budgets` defaults to the server's ladder for these counts.

        `dtype` is how sealed segments store vectors 1..: "bf16" (the default, half the bytes;
        a flush rounds them, so `get` then returns the rounded values), "f32" (read back
        exactly as written), "f16" or "int8". Vector 0 is always stored as f32.
        `candidate_index` is where deep budgets take candidates from: "tokens" (the default: a
        token index over the first `index_vectors` vectors, default 8) or "vector0".
        """
        req = pb.CreateCollectionRequest(
            name=name,
            dim=dim,
            doc_vectors=doc_vectors,
            query_vectors=query_vectors,
            budgets=[pb.Budget(r_q=q, r_c=c) for q, c in budgets or []],
            dtype=dtype,
            candidate_index=pb.CandidateIndexParams(kind=candidate_index, index_vectors=index_vectors),
        )
        return _info(self._call(self._collections.CreateCollection, req))

    def get_collection(self, name: str) -> dict:
        return _info(self._call(self._collections.GetCollection, pb.GetCollectionRequest(name=name)))

    def list_collections(self) -> list[dict]:
        r = self._call(self._collections.ListCollections, pb.ListCollectionsRequest())
        return [_info(c) for c in r.collections]

    def delete_collection(self, name: str) -> None:
        self._call(self._collections.DeleteCollection, pb.DeleteCollectionRequest(name=name))

    # Documents

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Optional[Sequence[Any]] = None,
        *,
        batch_size: int = 256,
    ) -> int:
        """Writes documents: `vectors` is [N, M_c, D]; `payloads` are dicts (or JSON text).

        Streams batches of `batch_size`; each batch is durable when the server acknowledges it.
        Returns the number of documents written.
        """
        ids = _ids(ids)
        vectors = np.asarray(vectors)
        if vectors.ndim != 3:
            raise ValueError(f"vectors must be 3-D [N, M_c, D], got shape {vectors.shape}")
        if len(ids) != vectors.shape[0]:
            raise ValueError(f"{len(ids)} ids for {vectors.shape[0]} documents")
        if payloads is not None and len(payloads) != len(ids):
            raise ValueError(f"{len(payloads)} payloads for {len(ids)} documents")

        def batches() -> Iterator[pb.UpsertRequest]:
            for start in range(0, len(ids), batch_size):
                end = min(start + batch_size, len(ids))
                yield pb.UpsertRequest(
                    collection=collection,
                    documents=[
                        pb.Document(
                            id=ids[i],
                            vectors=_vectors(vectors[i], f"vectors[{i}]"),
                            payload=_payload(payloads[i] if payloads is not None else None),
                        )
                        for i in range(start, end)
                    ],
                )

        return self._call(self._documents.Upsert, batches()).upserted

    def delete(self, collection: str, ids: Iterable[str]) -> int:
        """Deletes ids; returns how many existed."""
        r = self._call(self._documents.Delete, pb.DeleteRequest(collection=collection, ids=_ids(ids)))
        return r.deleted

    def delete_by_filter(self, collection: str, filter: Union[dict, str]) -> int:
        """Deletes every document whose payload passes `filter`; returns how many."""
        req = pb.DeleteByFilterRequest(collection=collection, filter=_payload(filter))
        return self._call(self._documents.DeleteByFilter, req).deleted

    def count(self, collection: str, filter: Union[dict, str, None] = None) -> int:
        """Live documents, or those whose payload passes `filter`."""
        req = pb.CountRequest(collection=collection, filter=_payload(filter))
        return self._call(self._documents.Count, req).count

    def scroll(
        self,
        collection: str,
        *,
        cursor: str = "",
        limit: int = 100,
        filter: Union[dict, str, None] = None,
        with_vectors: bool = False,
        with_payload: bool = False,
    ) -> tuple[list[Document], str]:
        """One page of documents in id order after `cursor`: `(documents, next_cursor)`, where
        `next_cursor` is "" on the last page. `scroll_all` follows the cursors for you."""
        req = pb.ScrollRequest(
            collection=collection,
            cursor=cursor,
            limit=limit,
            filter=_payload(filter),
            with_vectors=with_vectors,
            with_payload=with_payload,
        )
        r = self._call(self._documents.Scroll, req)
        docs = []
        for d in r.documents:
            v = None
            if d.HasField("vectors"):
                v = np.asarray(d.vectors.values, dtype=np.float32).reshape(d.vectors.count, d.vectors.dim)
            docs.append(Document(d.id, v, json.loads(d.payload) if d.payload else None))
        return docs, r.next_cursor

    def scroll_all(self, collection: str, **kw) -> Iterator[Document]:
        """Every document (passing `filter=`), in id order, a page (`limit=`) per request."""
        cursor = kw.pop("cursor", "")
        while True:
            docs, cursor = self.scroll(collection, cursor=cursor, **kw)
            yield from docs
            if not cursor:
                return

    def set_payload(
        self, collection: str, ids: Iterable[str], payload: Union[dict, str, None], *, merge: bool = False
    ) -> int:
        """Sets the payload of `ids` without resending vectors (`merge=True` keeps the other keys);
        all or nothing: an unknown id raises NotFound and updates none. Returns how many."""
        req = pb.SetPayloadRequest(collection=collection, ids=_ids(ids), payload=_payload(payload), merge=merge)
        return self._call(self._documents.SetPayload, req).updated

    def get(self, collection: str, ids: Iterable[str]) -> dict[str, tuple[np.ndarray, Optional[dict]]]:
        """Stored documents by id: `{id: (vectors [M, D] float32, payload)}`; missing ids are absent."""
        r = self._call(self._documents.Get, pb.GetRequest(collection=collection, ids=_ids(ids)))
        out = {}
        for d in r.documents:
            v = np.asarray(d.vectors.values, dtype=np.float32).reshape(d.vectors.count, d.vectors.dim)
            out[d.id] = (v, json.loads(d.payload) if d.payload else None)
        return out

    # Search

    def search(
        self,
        collection: str,
        query: np.ndarray,
        *,
        budget: Union[Budget, str] = DEFAULT_BUDGET,
        k: int = 10,
        candidates: int = 0,
        exact: bool = False,
        with_payload: bool = False,
        filter: Union[dict, str, None] = None,
        stages: Optional[Sequence[tuple[Budget, int]]] = None,
        latency_target_us: int = 0,
        allow_untrained_budget: bool = False,
        nprobe: int = 0,
        candidate_index: str = "",
    ) -> SearchResult:
        """MaxSim search of `query` [M_q, D] (or at least r_q rows) at `budget` = (r_q, r_c) or
        "RQxRC" (default (1, 1), the coarsest: pass a deeper trained budget for quality).

        `stages` = [((r_q, r_c), keep), ...] runs a cascade before the final budget. `filter` is
        the payload filter (a dict or its JSON text). `latency_target_us` lets the server pick the
        budget; the result reports the one used. `candidates` and `nprobe` tune the candidate stage
        (0 = server defaults); `candidate_index="vector0"` forces vector-0 candidates.
        """
        req = pb.SearchRequest(
            collection=collection,
            query=_vectors(query, "query"),
            budget=_budget(budget),
            k=k,
            candidates=candidates,
            exact=exact,
            with_payload=with_payload,
            allow_untrained_budget=allow_untrained_budget,
            stages=[pb.Stage(budget=_budget(b, f"stages[{i}]"), keep=keep) for i, (b, keep) in enumerate(stages or [])],
            filter=_payload(filter),
            latency_target_us=latency_target_us,
            nprobe=nprobe,
            candidate_index=candidate_index,
        )
        return _result(self._call(self._search.Search, req))

    def search_batch(
        self,
        collection: str,
        queries: np.ndarray,
        *,
        budget: Union[Budget, str] = DEFAULT_BUDGET,
        k: int = 10,
        exact: bool = False,
        with_payload: bool = False,
        filter: Union[dict, str, None] = None,
    ) -> list[SearchResult]:
        """Searches every query of `queries` [B, M_q, D] in one request."""
        queries = np.asarray(queries)
        if queries.ndim != 3:
            raise ValueError(f"queries must be 3-D [B, M_q, D], got shape {queries.shape}")
        req = pb.SearchBatchRequest(
            collection=collection,
            queries=[_vectors(q, f"queries[{i}]") for i, q in enumerate(queries)],
            budget=_budget(budget),
            k=k,
            exact=exact,
            with_payload=with_payload,
            filter=_payload(filter),
        )
        return [_result(r) for r in self._call(self._search.SearchBatch, req).results]

    # Admin

    def flush(self, collection: str = "") -> list[str]:
        """Seals memtables into segments ("" = every collection); returns the flushed names."""
        return list(self._call(self._admin.Flush, pb.FlushRequest(collection=collection)).flushed)

    def compact(self, collection: str, keep_r_c: int = 0) -> dict:
        r = self._call(self._admin.Compact, pb.CompactRequest(collection=collection, keep_r_c=keep_r_c))
        return _fields(r)

    def create_snapshot(self, collection: str) -> str:
        """Takes a snapshot; returns its name."""
        return self._call(self._admin.CreateSnapshot, pb.CreateSnapshotRequest(collection=collection)).name

    def list_snapshots(self, collection: str = "") -> list[dict]:
        """Snapshots (of one collection, or all): name, collection, created_unix_ms, last_seq,
        bytes."""
        r = self._call(self._admin.ListSnapshots, pb.ListSnapshotsRequest(collection=collection))
        return [_fields(s) for s in r.snapshots]

    def delete_snapshot(self, name: str) -> None:
        self._call(self._admin.DeleteSnapshot, pb.DeleteSnapshotRequest(name=name))

    def restore_snapshot(self, name: str, as_collection: str) -> dict:
        req = pb.RestoreSnapshotRequest(name=name, as_collection=as_collection)
        return _info(self._call(self._admin.RestoreSnapshot, req))

    def stats(self, collection: str = "") -> list[dict]:
        r = self._call(self._admin.Stats, pb.StatsRequest(collection=collection))
        return [_fields(c) for c in r.collections]


def _fields(msg) -> dict:
    """A protobuf message's set scalar fields (repeated ones as lists) as a plain dict."""
    return {
        f.name: v if isinstance(v, (str, bytes, int, float, bool)) else list(v)
        for f, v in msg.ListFields()
        if f.message_type is None
    }


def _info(c) -> dict:
    info = _fields(c)
    info["budgets"] = [(b.r_q, b.r_c) for b in c.config.budgets]
    info["dim"] = c.config.dim
    info["doc_vectors"] = c.config.doc_vectors
    info["query_vectors"] = c.config.query_vectors
    info["dtype"] = c.config.dtype
    info["candidate_index"] = c.config.candidate_index.kind
    info["index_vectors"] = c.config.candidate_index.index_vectors
    info["segments"] = len(c.segments)
    return info


def _result(r) -> SearchResult:
    return SearchResult(
        hits=[Hit(h.id, h.score, json.loads(h.payload) if h.payload else None) for h in r.hits],
        budget=(r.budget.r_q, r.budget.r_c),
        stats=_fields(r.stats),
    )
