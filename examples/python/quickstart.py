#!/usr/bin/env python3
"""metavec quickstart: create a collection, stream documents from a .npy file, search.

    pip install grpcio grpcio-tools numpy
    python3 examples/python/quickstart.py --addr 127.0.0.1:50051 --npy docs.npy

docs.npy holds float32/float16 vectors shaped [N, M_c, D]. --make-npy PATH writes a small
synthetic file first. The gRPC stubs are generated from proto/ at start (grpcio-tools).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load_stubs():
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="metavec-stubs-")
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main([
        "protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(proto_dir, "metavec", "v1", "metavec.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    from metavec.v1 import metavec_pb2, metavec_pb2_grpc  # noqa: E402
    return metavec_pb2, metavec_pb2_grpc


def make_npy(path, n=200, m_c=8, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 1, dim)).astype(np.float32)
    docs = base + 0.3 * rng.standard_normal((n, m_c, dim)).astype(np.float32)
    np.save(path, docs.astype(np.float16))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--npy", help="documents [N, M_c, D]")
    ap.add_argument("--make-npy", help="write a small synthetic .npy here and use it")
    ap.add_argument("--collection", default="quickstart")
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    path = args.npy
    if args.make_npy:
        make_npy(args.make_npy)
        path = args.make_npy
    if not path:
        sys.exit("give --npy or --make-npy")

    import grpc
    pb, rpc = load_stubs()
    docs = np.load(path).astype(np.float32)
    n, m_c, dim = docs.shape
    m_q = min(4, m_c)
    chan = grpc.insecure_channel(args.addr, options=[("grpc.max_send_message_length", 64 << 20)])
    collections = rpc.CollectionsStub(chan)
    documents = rpc.DocumentsStub(chan)
    search = rpc.SearchStub(chan)

    try:
        collections.DeleteCollection(pb.DeleteCollectionRequest(name=args.collection))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
    info = collections.CreateCollection(pb.CreateCollectionRequest(
        name=args.collection, dim=dim, doc_vectors=m_c, query_vectors=m_q))
    budgets = [(b.r_q, b.r_c) for b in info.config.budgets]
    print(f"created {info.name}: dim {dim}, M_c {m_c}, M_q {m_q}, trained budgets {budgets}")

    def batches():
        for start in range(0, n, args.batch):
            yield pb.UpsertRequest(collection=args.collection, documents=[
                pb.Document(
                    id=f"doc-{i:04d}",
                    vectors=pb.Vectors(count=m_c, dim=dim, values=docs[i].ravel().tolist()),
                    payload=json.dumps({"row": i}),
                )
                for i in range(start, min(n, start + args.batch))
            ])

    ack = documents.Upsert(batches())
    print(f"upserted {ack.upserted} documents in {ack.batches} batches")

    # Query with doc 0's own first vectors: it must come back first.
    r_q, r_c = budgets[-1]
    q = docs[0, :m_q]
    res = search.Search(pb.SearchRequest(
        collection=args.collection, query=pb.Vectors(count=m_q, dim=dim, values=q.ravel().tolist()),
        budget=pb.Budget(r_q=r_q, r_c=r_c), k=5, with_payload=True))
    for h in res.hits:
        print(f"  {h.id}  score {h.score:.4f}  payload {h.payload}")
    print(f"top hit: {res.hits[0].id} (budget ({r_q}, {r_c}), {res.stats.docs_scored} docs scored, "
          f"{res.stats.vector_bytes_read} vector bytes read)")


if __name__ == "__main__":
    main()
