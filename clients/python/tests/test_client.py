"""The Python client against the real server: numpy in and out, every call checked."""

import numpy as np
import pytest

import metavec
from metavec import Client

DIM, MC, MQ = 16, 8, 4


def unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def maxsim(q, d, rq, rc):
    return float((q[:rq] @ d[:rc].T).max(axis=1).sum())


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    docs = unit(rng.standard_normal((300, MC, DIM))).astype(np.float32)
    queries = unit(rng.standard_normal((5, MQ, DIM))).astype(np.float32)
    return docs, queries


@pytest.fixture(scope="module")
def client(server, data):
    docs, _ = data
    c = Client(server)
    info = c.create_collection("py", DIM, MC, MQ)
    assert info["name"] == "py" and info["dim"] == DIM
    assert (1, 1) in info["budgets"]
    ids = [f"doc-{i}" for i in range(len(docs))]
    payloads = [{"parity": "even" if i % 2 == 0 else "odd", "i": i} for i in range(len(docs))]
    assert c.upsert("py", ids, docs, payloads, batch_size=64) == len(docs)
    yield c
    c.close()


def test_search_matches_numpy_maxsim_at_every_budget(client, data):
    docs, queries = data
    for budget in [(1, 1), (2, 4), (4, 8)]:
        for q in queries:
            res = client.search("py", q, budget=budget, k=5, exact=True)
            assert res.budget == budget
            scores = np.array([maxsim(q, d, *budget) for d in docs])
            want = [f"doc-{i}" for i in np.argsort(-scores, kind="stable")[:5]]
            assert [h.id for h in res.hits] == want
            for h in res.hits:
                assert h.score == pytest.approx(scores[int(h.id[4:])], abs=1e-4)
            assert res.stats["docs_scored"] == len(docs)


def test_default_search_finds_the_exact_top_hits(client, data):
    _, queries = data
    for q in queries:
        fast = client.search("py", q, budget=(2, 4), k=5)
        exact = client.search("py", q, budget=(2, 4), k=5, exact=True)
        assert [h.id for h in fast.hits] == [h.id for h in exact.hits]


def test_filters_payloads_and_batches(client, data):
    _, queries = data
    res = client.search("py", queries[0], budget=(2, 4), k=7, with_payload=True,
                        filter={"eq": {"field": "parity", "value": "odd"}})
    assert len(res.hits) == 7
    assert all(h.payload["parity"] == "odd" for h in res.hits)
    batch = client.search_batch("py", queries, budget=(2, 4), k=3)
    assert len(batch) == len(queries)
    for q, r in zip(queries, batch):
        assert [h.id for h in r.hits] == [h.id for h in client.search("py", q, budget=(2, 4), k=3).hits]


def test_get_delete_flush_compact_snapshot(client, data):
    docs, _ = data
    got = client.get("py", ["doc-3", "nope"])
    assert set(got) == {"doc-3"}
    vectors, payload = got["doc-3"]
    assert vectors.shape == (MC, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, docs[3], atol=1e-6)
    assert payload == {"parity": "odd", "i": 3}
    assert client.delete("py", ["doc-3", "nope"]) == 1
    assert client.get("py", ["doc-3"]) == {}
    assert client.flush("py") == ["py"]
    report = client.compact("py")
    assert report.get("docs_out", 0) in (0, len(docs) - 1)
    snap = client.create_snapshot("py")
    restored = client.restore_snapshot(snap, "py-restored")
    assert restored["live_docs"] == len(docs) - 1
    stats = {s["name"]: s for s in client.stats()}
    assert stats["py-restored"]["live_docs"] == len(docs) - 1


def test_compact_dtype_and_half_floats_on_the_wire(client, data):
    docs, queries = data
    info = client.create_collection("py-bf16", DIM, MC, MQ, dtype="bf16")
    assert info["dtype"] == "bf16"
    half = docs[:50].astype(np.float16)  # sent as raw f16 bytes
    ids = [f"h-{i}" for i in range(50)]
    assert client.upsert("py-bf16", ids, half) == 50
    assert client.flush("py-bf16") == ["py-bf16"]
    got = client.get("py-bf16", ["h-7"])["h-7"][0]
    want = unit(half[7].astype(np.float32))
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)  # vector 0 stays f32
    np.testing.assert_allclose(got, want, atol=4e-3)  # the rest is bf16
    assert np.abs(got - want).max() > 0
    r = client.search("py-bf16", queries[0][:4], budget=(4, 8), k=3, exact=True)
    stored = {i: client.get("py-bf16", [i])[i][0] for i in ids}
    best = sorted(stored, key=lambda i: -maxsim(unit(queries[0]), stored[i], 4, 8))[:3]
    assert [h.id for h in r.hits] == best


def test_errors_are_typed_and_name_the_field(client, data):
    docs, queries = data
    with pytest.raises(metavec.NotFound):
        client.search("missing", queries[0], budget=(1, 1))
    with pytest.raises(metavec.InvalidArgument) as e:
        client.search("py", queries[0][:, :DIM - 1], budget=(1, 1))
    assert "dim" in e.value.message
    with pytest.raises(metavec.InvalidArgument) as e:
        client.search("py", queries[0], budget=(3, 5))
    assert "budget" in e.value.message
    with pytest.raises(metavec.AlreadyExists):
        client.create_collection("py", DIM, MC, MQ)
    with pytest.raises(ValueError):
        client.upsert("py", ["x"], docs[0])


def test_candidate_index_is_chosen_at_creation_and_overridable_per_search(client, data):
    docs, queries = data
    assert client.get_collection("py")["candidate_index"] == "tokens"
    info = client.create_collection("py-v0", DIM, MC, MQ, candidate_index="vector0")
    assert info["candidate_index"] == "vector0"
    client.upsert("py-v0", [f"v-{i}" for i in range(len(docs))], docs)
    client.flush("py-v0")
    exact = client.search("py-v0", queries[0], budget=(4, 8), k=5, exact=True)
    # 300 documents fit in one segment's share of candidates: every path is exact here.
    for kw in [{}, {"candidate_index": "vector0"}, {"nprobe": 2}]:
        res = client.search("py-v0", queries[0], budget=(4, 8), k=5, **kw)
        assert [h.id for h in res.hits] == [h.id for h in exact.hits], kw
    with pytest.raises(metavec.InvalidArgument) as e:
        client.search("py", queries[0], budget=(4, 8), candidate_index="ivf")
    assert "candidate_index" in e.value.message
    with pytest.raises(metavec.InvalidArgument) as e:
        client.create_collection("py-bad", DIM, MC, MQ, index_vectors=MC + 1)
    assert "index_vectors" in e.value.message


def test_documents_as_a_set_scroll_count_set_payload_delete_by_filter(client, data):
    docs, _ = data
    c = client
    c.create_collection("py-set", DIM, MC, MQ, dtype="f32")
    ids = [f"s-{i:03d}" for i in range(120)]
    c.upsert("py-set", ids, docs[:120], [{"g": i % 3, "tag": {"odd": i % 2 == 1}} for i in range(120)])
    c.flush("py-set")
    # Pages in id order, following the cursor; vectors and payloads on request.
    page, cursor = c.scroll("py-set", limit=50, with_payload=True)
    assert [d.id for d in page] == ids[:50] and cursor == ids[49]
    assert page[0].vectors is None and page[0].payload == {"g": 0, "tag": {"odd": False}}
    every = list(c.scroll_all("py-set", limit=17, with_vectors=True))
    assert [d.id for d in every] == ids
    np.testing.assert_allclose(every[5].vectors, docs[5], atol=1e-6)
    odd = {"eq": {"field": "tag.odd", "value": True}}
    assert c.count("py-set") == 120
    assert c.count("py-set", odd) == 60
    assert [d.id for d in c.scroll_all("py-set", filter=odd)] == ids[1::2]
    # Payload updates without vectors: merge keeps the other keys, unknown ids change nothing.
    assert c.set_payload("py-set", ["s-000", "s-001"], {"star": True}, merge=True) == 2
    got = c.get("py-set", ["s-000"])["s-000"]
    assert got[1] == {"g": 0, "tag": {"odd": False}, "star": True}
    np.testing.assert_allclose(got[0], docs[0], atol=1e-6)
    with pytest.raises(metavec.NotFound) as e:
        c.set_payload("py-set", ["s-002", "nope"], {"star": True})
    assert "nope" in e.value.message
    assert c.count("py-set", {"eq": {"field": "star", "value": True}}) == 2
    assert c.delete_by_filter("py-set", {"eq": {"field": "g", "value": 1}}) == 40
    assert c.count("py-set") == 80


def test_budgets_ids_and_snapshots_are_checked_on_the_client(client, data):
    docs, queries = data
    c = client
    # A budget as "RQxRC" is the same as the tuple; the default is documented and coarsest.
    a = c.search("py", queries[0], budget="2x4", k=5, exact=True)
    b = c.search("py", queries[0], budget=(2, 4), k=5, exact=True)
    assert [h.id for h in a.hits] == [h.id for h in b.hits] and a.budget == (2, 4)
    assert c.search("py", queries[0], k=3).budget == metavec.DEFAULT_BUDGET == (1, 1)
    with pytest.raises(ValueError, match="4by8"):
        c.search("py", queries[0], budget="4by8")
    with pytest.raises(TypeError, match="tuple"):
        c.search("py", queries[0], budget=4)
    with pytest.raises(TypeError, match="integers"):
        c.search("py", queries[0], budget=(2.0, 4))
    # Ids are strings: anything else is refused before it is sent, naming the entry.
    with pytest.raises(TypeError, match=r"ids\[1\] is int 7"):
        c.upsert("py", ["x", 7], docs[:2])
    with pytest.raises(TypeError, match="one string"):
        c.delete("py", "doc-1")
    with pytest.raises(TypeError, match=r"ids\[0\]"):
        c.get("py", [3])
    # Snapshots: list and delete.
    name = c.create_snapshot("py")
    snaps = c.list_snapshots("py")
    assert name in [s["name"] for s in snaps]
    mine = next(s for s in snaps if s["name"] == name)
    assert mine["collection"] == "py" and mine["created_unix_ms"] > 0
    c.delete_snapshot(name)
    assert name not in [s["name"] for s in c.list_snapshots()]
    with pytest.raises(metavec.NotFound):
        c.delete_snapshot(name)
