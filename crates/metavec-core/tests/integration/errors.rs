//! Bad input gets a clear error naming the field, and writes nothing.

use metavec_core::{Budget, CollectionConfig, Document, Error, SearchRequest};

use crate::support::engine_with;

fn invalid(r: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match r {
        Err(Error::InvalidArgument(msg)) => {
            assert!(msg.contains(needle), "{msg:?} should mention {needle:?}")
        }
        other => panic!("expected InvalidArgument mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn bad_requests_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), 1 << 30);
    let cfg = CollectionConfig::new(4, 4, 2);
    let coll = engine.create_collection("e", cfg.clone()).unwrap();
    let good = |id: &str| Document::new(id, vec![1.0; 16]);

    invalid(
        coll.upsert(vec![Document::new("a", vec![1.0; 15])]),
        "has 15 floats",
    );
    let mut nan = vec![1.0; 16];
    nan[9] = f32::NAN;
    invalid(
        coll.upsert(vec![good("ok"), Document::new("a", nan)]),
        "documents[1] (id \"a\") vector 2",
    );
    let mut inf = vec![1.0; 16];
    inf[0] = f32::INFINITY;
    invalid(coll.upsert(vec![Document::new("a", inf)]), "non-finite");
    invalid(coll.upsert(vec![Document::new("z", vec![0.0; 16])]), "zero");
    invalid(coll.upsert(vec![good("")]), "documents[0].id is empty");
    invalid(coll.upsert(vec![good(&"x".repeat(257))]), "257 bytes");
    invalid(coll.upsert(vec![good("d"), good("d")]), "appears twice");
    invalid(coll.upsert(vec![]), "documents is empty");
    invalid(
        coll.upsert(vec![good("p").with_payload("[1,2]")]),
        "payload must be a JSON object",
    );
    invalid(
        coll.upsert(vec![good("p").with_payload("{nope")]),
        "not valid JSON",
    );
    invalid(coll.delete(&[]), "ids is empty");
    invalid(coll.delete(&[String::new()]), "ids[0] is empty");
    assert_eq!(coll.len(), 0, "a rejected batch writes nothing");

    coll.upsert(vec![good("a")]).unwrap();
    let q = vec![1.0; 8];
    let search = |q: Vec<f32>, b: Budget, k: u32| coll.search(&SearchRequest::new(q, b, k));
    invalid(search(q.clone(), Budget::new(1, 1), 0), "k is 0");
    invalid(search(q.clone(), Budget::new(1, 1), 10_001), "k is 10001");
    invalid(
        search(vec![1.0; 7], Budget::new(1, 1), 1),
        "not a whole number of vectors of dim 4",
    );
    invalid(
        search(vec![1.0; 12], Budget::new(1, 1), 1),
        "query has 3 vectors",
    );
    invalid(search(q.clone(), Budget::new(0, 1), 1), "budget.r_q is 0");
    invalid(search(q.clone(), Budget::new(1, 5), 1), "budget.r_c is 5");
    invalid(
        search(vec![1.0; 4], Budget::new(2, 4), 1),
        "budget.r_q is 2",
    );
    invalid(
        search(q.clone(), Budget::new(1, 4), 1),
        "not a trained budget",
    );
    let mut nanq = q.clone();
    nanq[5] = f32::NAN;
    invalid(search(nanq, Budget::new(2, 4), 1), "query vector 1");
    let mut req = SearchRequest::new(q.clone(), Budget::new(1, 4), 1);
    req.allow_untrained_budget = true;
    assert_eq!(coll.search(&req).unwrap().hits.len(), 1);

    invalid(
        engine.create_collection("bad/name", cfg.clone()),
        "collection name",
    );
    invalid(
        engine.create_collection("x", CollectionConfig::new(0, 4, 2)),
        "dim is 0",
    );
    let mut bad_budgets = cfg.clone();
    bad_budgets.budgets = vec![Budget::new(2, 4), Budget::new(1, 1)];
    invalid(engine.create_collection("x", bad_budgets), "budgets[1]");
    assert!(matches!(
        engine.create_collection("e", cfg.clone()),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        engine.collection("missing"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        engine.delete_collection("missing"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn collections_are_listed_deleted_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine_with(dir.path(), 1 << 30);
        engine
            .create_collection("one", CollectionConfig::new(4, 4, 2))
            .unwrap();
        let two = engine
            .create_collection("two", CollectionConfig::new(8, 16, 8))
            .unwrap();
        two.upsert(vec![Document::new("x", vec![0.5; 128])])
            .unwrap();
        let names: Vec<String> = engine
            .list_collections()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["one", "two"]);
        let one_dir = engine.collection("one").unwrap().dir().to_path_buf();
        engine.delete_collection("one").unwrap();
        assert!(!one_dir.exists());
    }
    let engine = engine_with(dir.path(), 1 << 30);
    let list = engine.list_collections();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "two");
    assert_eq!(list[0].live_docs, 1);
    assert_eq!(list[0].config.budgets.len(), 4);
    // A handle to a deleted collection fails cleanly.
    let two = engine.collection("two").unwrap();
    engine.delete_collection("two").unwrap();
    assert!(matches!(
        two.get(&["x".to_string()]),
        Err(Error::NotFound(_))
    ));
}
