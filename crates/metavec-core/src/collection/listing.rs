//! Documents as a set rather than one id at a time: paged listing in id order ([`Collection::scroll`]),
//! counting ([`Collection::count`]), deleting by filter ([`Collection::delete_by_filter`]) and
//! payload-only updates ([`Collection::set_payload`]).
//!
//! Listing and counting read a point-in-time [`super::View`], as searches do. The two writes
//! decide which documents they touch under the state write lock, against each id's current
//! version, so a document rewritten between the read and the write is judged as it is now.
//!
//! Segments are immutable, so a payload update is a **rewrite**: the document's stored vectors
//! are logged again with the new payload, as one WAL upsert record, and the document lives in
//! the memtable until the next flush seals it (its old copy is tombstoned, as any overwrite's).
//! There is no payload overlay to merge at read time: every reader sees one version of a
//! document. The cost is the vectors' bytes in the WAL for each updated document.

use serde_json::{Map, Value};

use super::view::Found;
use super::{lost, Collection, WriteAck};
use crate::document::{validate_id, validate_payload};
use crate::error::{Error, Result};
use crate::search::Filter;
use crate::wal;
use crate::Document;

/// The most ids one [`Collection::scroll`] page may ask for.
pub const MAX_SCROLL_LIMIT: usize = 10_000;

/// The most ids one [`Collection::set_payload`] call may name.
pub const MAX_SET_PAYLOAD_IDS: usize = 1_000;

/// One page of [`Collection::scroll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrollPage {
    /// Live ids passing the filter, ascending (byte order), at most the page's limit.
    pub ids: Vec<String>,
    /// The cursor of the next page (the last id of this one), `None` when this page is the last.
    pub next: Option<String>,
}

/// How [`Collection::set_payload`] combines the new payload with the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadUpdate {
    /// The new object replaces the stored payload (`None` clears it).
    Overwrite,
    /// The new object's top-level keys are set in the stored payload; other keys stay.
    Merge,
}

/// The first ordinal of a segment (in id order) whose id is greater than `after`.
fn first_after(seg: &crate::segment::Segment, after: &str) -> usize {
    let (mut lo, mut hi) = (0, seg.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if seg.doc_id(mid) <= after {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

impl Collection {
    /// Up to `limit` (1..=[`MAX_SCROLL_LIMIT`]) live ids greater than `after` (all from the
    /// first when `None`), ascending, that pass `filter`; and the cursor of the next page.
    /// Pages chained through `next` list every document live throughout exactly once; a
    /// document written or deleted meanwhile shows up in a later page or not, as its id falls.
    pub fn scroll(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> Result<ScrollPage> {
        self.check_live()?;
        if limit == 0 || limit > MAX_SCROLL_LIMIT {
            return Err(Error::invalid(format!(
                "limit is {limit}: a page holds 1..={MAX_SCROLL_LIMIT} ids"
            )));
        }
        if let Some(a) = after {
            validate_id(a, "after")?;
        }
        let view = self.view(filter);
        // Each source gives at most limit + 1 ids past the cursor (one more tells whether a
        // next page exists); an id is live in one place only, so the union has no repeats.
        let want = limit + 1;
        let past = |id: &str| after.is_none_or(|a| id > a);
        let mut ids: Vec<&str> = view
            .mem()
            .iter()
            .map(|d| d.id.as_str())
            .filter(|id| past(id))
            .collect();
        ids.sort_unstable();
        ids.truncate(want);
        for (si, sv) in view.segments().iter().enumerate() {
            let start = after.map_or(0, |a| first_after(&sv.seg, a));
            ids.extend(
                (start..sv.seg.len())
                    .filter(|&ord| view.allowed(si, ord))
                    .take(want)
                    .map(|ord| sv.seg.doc_id(ord)),
            );
        }
        ids.sort_unstable();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let next = more.then(|| ids[limit - 1].to_string());
        Ok(ScrollPage {
            ids: ids.into_iter().map(str::to_string).collect(),
            next,
        })
    }

    /// Live documents passing `filter` (all of them when `None`).
    pub fn count(&self, filter: Option<&Filter>) -> Result<u64> {
        self.check_live()?;
        if filter.is_none() {
            return Ok(self.len() as u64);
        }
        let view = self.view(filter);
        let segs: usize = (0..view.segments().len())
            .map(|si| {
                (0..view.seg(si).len())
                    .filter(|&ord| view.allowed(si, ord))
                    .count()
            })
            .sum();
        Ok((view.mem().len() + segs) as u64)
    }

    /// Deletes every live document passing `filter`, durably, in one WAL record; returns how
    /// many. The matches are found on a point-in-time view and checked again, under the write
    /// lock, against each id's current version: a document rewritten meanwhile so that it no
    /// longer matches is kept, and one written after the view is not considered. Nothing matching
    /// writes nothing (`seq` is then the collection's last).
    pub fn delete_by_filter(&self, filter: &Filter) -> Result<WriteAck> {
        self.check_live()?;
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.scroll(after.as_deref(), MAX_SCROLL_LIMIT, Some(filter))?;
            ids.extend(page.ids);
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let (seq, pos, count) = {
            let mut st = self.state.write();
            ids.retain(|id| {
                st.locate(id)
                    .and_then(|loc| st.found(loc))
                    .is_some_and(|f| filter.matches_text(f.payload()))
            });
            if ids.is_empty() {
                return Ok(WriteAck {
                    seq: st.next_seq.saturating_sub(1),
                    count: 0,
                });
            }
            let seq = st.next_seq;
            let pos = self.wal.append(&wal::record::encode_delete(seq, &ids))?;
            st.next_seq += 1;
            (seq, pos, st.apply_delete(&ids))
        };
        self.wal.sync(pos)?;
        self.nudge_compactor();
        Ok(WriteAck { seq, count })
    }

    /// Sets the payload of each of `ids` (1..=[`MAX_SET_PAYLOAD_IDS`], no repeats) without
    /// resending vectors: `payload` (a JSON object, or `None`) replaces the stored one or is
    /// merged into it key by key. All or nothing: an id that is not stored fails the call with
    /// NotFound and writes nothing. A rewrite (see the module doc): durable when acknowledged,
    /// visible at once, the vectors as stored (rounded to the collection's dtype if sealed).
    pub fn set_payload(
        &self,
        ids: &[String],
        payload: Option<&str>,
        how: PayloadUpdate,
    ) -> Result<WriteAck> {
        self.check_live()?;
        if ids.is_empty() || ids.len() > MAX_SET_PAYLOAD_IDS {
            return Err(Error::invalid(format!(
                "ids has {} entries: a payload update names 1..={MAX_SET_PAYLOAD_IDS} ids",
                ids.len()
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            validate_id(id, &format!("ids[{i}]"))?;
            if !seen.insert(id.as_str()) {
                return Err(Error::invalid(format!("ids[{i}] {id:?} appears twice")));
            }
        }
        let new: Option<Map<String, Value>> = match payload {
            None => None,
            Some(p) => {
                validate_payload(p, "payload")?;
                match serde_json::from_str::<Value>(p) {
                    Ok(Value::Object(m)) => Some(m),
                    _ => return Err(Error::invalid("payload is not a JSON object")),
                }
            }
        };
        let floats = self.config.doc_floats();
        let (seq, pos, count, over) = {
            let mut st = self.state.write();
            let mut docs = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(loc) = st.locate(id) else {
                    return Err(Error::NotFound(format!(
                        "document {id:?} is not in collection {:?}",
                        self.name
                    )));
                };
                let (mut vectors, old) = match st.found(loc).ok_or_else(|| lost(id))? {
                    Found::Mem(d) => (d.vectors.clone(), d.payload.clone()),
                    Found::Seg(seg, ord) => (
                        seg.vectors(ord as usize)?,
                        seg.payload(ord as usize).map(str::to_string),
                    ),
                };
                // A collection shrunk to a budget stores fewer vectors: the rest are zeros no
                // budget it can still serve reads, and the next flush drops them again.
                vectors.resize(floats, 0.0);
                let payload = match (how, &new) {
                    (PayloadUpdate::Overwrite, n) => n.as_ref().map(|m| Value::Object(m.clone())),
                    (PayloadUpdate::Merge, None) => old.as_deref().map(parse_object),
                    (PayloadUpdate::Merge, Some(n)) => {
                        let mut m = match old.as_deref().map(parse_object) {
                            Some(Value::Object(m)) => m,
                            _ => Map::new(),
                        };
                        m.extend(n.iter().map(|(k, v)| (k.clone(), v.clone())));
                        Some(Value::Object(m))
                    }
                }
                .map(|v| v.to_string());
                if let Some(p) = &payload {
                    validate_payload(p, &format!("the merged payload of {id:?}"))?;
                }
                docs.push(Document {
                    id: id.clone(),
                    vectors,
                    payload,
                });
            }
            let seq = st.next_seq;
            let pos = self.wal.append(&wal::record::encode_upsert(seq, &docs))?;
            st.next_seq += 1;
            let count = docs.len();
            st.apply_upsert(docs);
            (seq, pos, count, st.mem.bytes)
        };
        self.wal.sync(pos)?;
        if over >= self.opts.memtable_max_bytes {
            self.nudge();
        }
        Ok(WriteAck { seq, count })
    }
}

/// A stored payload as JSON (stored payloads were validated as objects on the way in).
fn parse_object(p: &str) -> Value {
    serde_json::from_str(p).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::synth::{generate, SynthData, SynthSpec};
    use crate::{CollectionConfig, CollectionOptions, Dtype, Engine, EngineOptions};

    fn engine(dir: &std::path::Path) -> Engine {
        // Background compaction off: the test decides where documents sit.
        let opts = CollectionOptions {
            compact_fanout: usize::MAX,
            compact_max_segments: usize::MAX,
            compact_dead_ratio: 2.0,
            ..Default::default()
        };
        Engine::open(dir, EngineOptions { collection: opts }).unwrap()
    }

    fn payload(i: usize) -> String {
        format!(r#"{{"g":{},"i":{i},"meta":{{"src":"s{}"}}}}"#, i % 3, i % 2)
    }

    /// 300 documents over two segments and the memtable, some deleted, some overwritten (the
    /// overwrite moves them to group 2), as the model the listing is checked against:
    /// id -> payload.
    fn populated(
        e: &Engine,
        dtype: Dtype,
    ) -> (Arc<Collection>, SynthData, BTreeMap<String, String>) {
        let data = generate(&SynthSpec::new(300, 1, 8, &[(1, 1), (2, 4)], 5));
        let c = e
            .create_collection("c", CollectionConfig::new(8, 4, 2).with_dtype(dtype))
            .unwrap();
        let mut model = BTreeMap::new();
        for r in [0..120, 120..240, 240..300] {
            let docs: Vec<Document> = r
                .clone()
                .map(|i| {
                    Document::new(SynthData::id(i), data.doc(i).to_vec()).with_payload(payload(i))
                })
                .collect();
            c.upsert(docs).unwrap();
            model.extend(r.map(|i| (SynthData::id(i), payload(i))));
            if model.len() < 300 {
                c.flush().unwrap();
            }
        }
        let gone: Vec<String> = (0..300).step_by(7).map(SynthData::id).collect();
        c.delete(&gone).unwrap();
        for g in &gone {
            model.remove(g);
        }
        let over: Vec<Document> = (1..300)
            .step_by(11)
            .filter(|i| i % 7 != 0)
            .map(|i| {
                Document::new(SynthData::id(i), data.doc(i).to_vec())
                    .with_payload(r#"{"g":2,"moved":true}"#)
            })
            .collect();
        for d in &over {
            model.insert(d.id.clone(), d.payload.clone().unwrap());
        }
        c.upsert(over).unwrap();
        (c, data, model)
    }

    fn all_pages(c: &Collection, limit: usize, filter: Option<&Filter>) -> Vec<String> {
        let (mut out, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = c.scroll(after.as_deref(), limit, filter).unwrap();
            assert!(page.ids.len() <= limit);
            out.extend(page.ids);
            match page.next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    fn matching(model: &BTreeMap<String, String>, f: &Filter) -> Vec<String> {
        model
            .iter()
            .filter(|(_, p)| f.matches_text(Some(p)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    #[test]
    fn scroll_lists_every_live_document_once_in_id_order_and_count_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let (c, _, model) = populated(&e, Dtype::Bf16);
        assert!(c.info().segments.len() >= 2 && c.info().memtable_docs > 0);
        let ids: Vec<String> = model.keys().cloned().collect();
        for limit in [1, 7, 64, 1000] {
            assert_eq!(all_pages(&c, limit, None), ids, "limit {limit}");
        }
        assert_eq!(c.count(None).unwrap(), ids.len() as u64);
        let f = Filter::parse(
            r#"{"and":[{"eq":{"field":"g","value":2}},{"eq":{"field":"meta.src","value":"s1"}}]}"#,
        )
        .unwrap();
        let want = matching(&model, &f);
        assert!(!want.is_empty());
        assert_eq!(all_pages(&c, 5, Some(&f)), want);
        assert_eq!(c.count(Some(&f)).unwrap(), want.len() as u64);
        let moved = Filter::parse(r#"{"eq":{"field":"moved","value":true}}"#).unwrap();
        assert_eq!(
            c.count(Some(&moved)).unwrap(),
            matching(&model, &moved).len() as u64
        );
        // A cursor that is not an id starts after where it would sort.
        let page = c.scroll(Some(&format!("{}x", ids[10])), 3, None).unwrap();
        assert_eq!(page.ids, ids[11..14]);
        assert_eq!(page.next.as_deref(), Some(ids[13].as_str()));
        // The last page says so.
        let last = c.scroll(Some(&ids[ids.len() - 3]), 5, None).unwrap();
        assert_eq!(last.ids, ids[ids.len() - 2..]);
        assert_eq!(last.next, None);
        for (limit, what) in [(0, "limit is 0"), (MAX_SCROLL_LIMIT + 1, "limit is 10001")] {
            let err = c.scroll(None, limit, None).unwrap_err().to_string();
            assert!(err.contains(what), "{err}");
        }
        let err = c.scroll(Some(""), 5, None).unwrap_err().to_string();
        assert!(err.contains("after"), "{err}");
    }

    #[test]
    fn delete_by_filter_deletes_exactly_the_matches_durably() {
        let dir = tempfile::tempdir().unwrap();
        let (want, keep) = {
            let e = engine(dir.path());
            let (c, _, model) = populated(&e, Dtype::F32);
            let f = Filter::parse(
                r#"{"or":[{"eq":{"field":"g","value":0}},{"eq":{"field":"moved","value":true}}]}"#,
            )
            .unwrap();
            let want = matching(&model, &f);
            let ack = c.delete_by_filter(&f).unwrap();
            assert_eq!(ack.count, want.len());
            assert_eq!(c.count(Some(&f)).unwrap(), 0);
            // Nothing left to match: nothing written.
            assert_eq!(c.delete_by_filter(&f).unwrap().count, 0);
            let keep: Vec<String> = model
                .keys()
                .filter(|id| !want.contains(id))
                .cloned()
                .collect();
            assert_eq!(all_pages(&c, 50, None), keep);
            (want, keep)
        };
        // Reopened: the deletes came back from the WAL.
        let e = engine(dir.path());
        let c = e.collection("c").unwrap();
        assert_eq!(all_pages(&c, 50, None), keep);
        assert!(c.get(&want).unwrap().iter().all(Option::is_none));
    }

    #[test]
    fn set_payload_rewrites_payloads_and_keeps_the_stored_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = SynthData::id(3); // in the first segment
        let fresh = SynthData::id(250); // in the memtable
        let (before, ids) = {
            let e = engine(dir.path());
            let (c, _, _) = populated(&e, Dtype::Bf16);
            let ids = vec![sealed.clone(), fresh.clone()];
            let before = c.get(&ids).unwrap();
            let ack = c
                .set_payload(&ids, Some(r#"{"g":9,"tag":"x"}"#), PayloadUpdate::Merge)
                .unwrap();
            assert_eq!(ack.count, 2);
            let after = c.get(&ids).unwrap();
            for (b, a) in before.iter().zip(&after) {
                let (b, a) = (b.as_ref().unwrap(), a.as_ref().unwrap());
                assert_eq!(a.vectors, b.vectors, "vectors of {}", a.id);
                let p: Value = serde_json::from_str(a.payload.as_deref().unwrap()).unwrap();
                assert_eq!(p["g"], 9);
                assert_eq!(p["tag"], "x");
                assert!(p.get("i").is_some(), "merge keeps the other keys: {p}");
            }
            let f = Filter::parse(r#"{"eq":{"field":"tag","value":"x"}}"#).unwrap();
            assert_eq!(all_pages(&c, 10, Some(&f)), ids);
            // Overwrite replaces; None clears.
            c.set_payload(&ids[..1], Some(r#"{"only":1}"#), PayloadUpdate::Overwrite)
                .unwrap();
            c.set_payload(&ids[1..], None, PayloadUpdate::Overwrite)
                .unwrap();
            let got = c.get(&ids).unwrap();
            assert_eq!(
                got[0].as_ref().unwrap().payload.as_deref(),
                Some(r#"{"only":1}"#)
            );
            assert_eq!(got[1].as_ref().unwrap().payload, None);
            // All or nothing: one unknown id writes nothing.
            let err = c
                .set_payload(
                    &[sealed.clone(), "nope".to_string()],
                    Some(r#"{"z":1}"#),
                    PayloadUpdate::Overwrite,
                )
                .unwrap_err();
            assert!(
                matches!(err, Error::NotFound(ref m) if m.contains("\"nope\"")),
                "{err}"
            );
            for (bad, what) in [("[1]", "JSON object"), ("{", "payload")] {
                let err = c
                    .set_payload(&ids, Some(bad), PayloadUpdate::Merge)
                    .unwrap_err()
                    .to_string();
                assert!(err.contains(what), "{err}");
            }
            let err = c.set_payload(&[], None, PayloadUpdate::Merge).unwrap_err();
            assert!(err.to_string().contains("ids has 0 entries"), "{err}");
            (before, ids)
        };
        // Reopened (replayed from the WAL), vectors unchanged; then sealed (the memtable
        // document's vectors are rounded to bf16 there, as any document's): payloads stay.
        let e = engine(dir.path());
        let c = e.collection("c").unwrap();
        let got = c.get(&ids).unwrap();
        for (b, a) in before.iter().zip(&got) {
            assert_eq!(a.as_ref().unwrap().vectors, b.as_ref().unwrap().vectors);
        }
        c.flush().unwrap();
        let got = c.get(&ids).unwrap();
        assert_eq!(
            got[0].as_ref().unwrap().payload.as_deref(),
            Some(r#"{"only":1}"#)
        );
        assert_eq!(got[1].as_ref().unwrap().payload, None);
        assert_eq!(
            got[0].as_ref().unwrap().vectors,
            before[0].as_ref().unwrap().vectors
        );
    }
}
