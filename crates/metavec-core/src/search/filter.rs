//! Payload filters: equality and set membership on strings (and other JSON scalars), ranges on
//! numbers, combined with and / or / not. Written as JSON, e.g.
//! `{"and": [{"eq": {"field": "lang", "value": "en"}}, {"range": {"field": "year", "gte": 2000}}]}`.
//! A field is a top-level payload key or a dotted path (`"meta.source"`). A document without a
//! payload, or without the field, matches no `eq`/`in`/`range` (and so matches their `not`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Filter {
    Eq {
        field: String,
        value: Value,
    },
    In {
        field: String,
        values: Vec<Value>,
    },
    Range {
        field: String,
        #[serde(default)]
        gt: Option<f64>,
        #[serde(default)]
        gte: Option<f64>,
        #[serde(default)]
        lt: Option<f64>,
        #[serde(default)]
        lte: Option<f64>,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

fn lookup<'a>(doc: &'a Value, field: &str) -> Option<&'a Value> {
    field.split('.').try_fold(doc, |v, key| v.get(key))
}

impl Filter {
    /// Parses and checks a filter; the message names `filter` and what is wrong.
    pub fn parse(json: &str) -> Result<Filter> {
        let f: Filter = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("filter is not a valid filter: {e}")))?;
        f.check()?;
        Ok(f)
    }

    fn check(&self) -> Result<()> {
        match self {
            Filter::Eq { field, value } => {
                if field.is_empty() || value.is_object() || value.is_array() {
                    return Err(Error::invalid(format!(
                        "filter eq on {field:?}: needs a field and a scalar value"
                    )));
                }
            }
            Filter::In { field, values } => {
                if field.is_empty()
                    || values.is_empty()
                    || values.iter().any(|v| v.is_object() || v.is_array())
                {
                    return Err(Error::invalid(format!(
                        "filter in on {field:?}: needs a field and a non-empty list of scalars"
                    )));
                }
            }
            Filter::Range {
                field,
                gt,
                gte,
                lt,
                lte,
            } => {
                if field.is_empty() || [gt, gte, lt, lte].iter().all(|b| b.is_none()) {
                    return Err(Error::invalid(format!("filter range on {field:?}: needs a field and at least one of gt, gte, lt, lte")));
                }
            }
            Filter::And(fs) | Filter::Or(fs) => {
                if fs.is_empty() {
                    return Err(Error::invalid("filter and/or needs at least one operand"));
                }
                fs.iter().try_for_each(Filter::check)?;
            }
            Filter::Not(f) => f.check()?,
        }
        Ok(())
    }

    /// Whether a document with this payload (JSON object text, or none) matches.
    pub fn matches_text(&self, payload: Option<&str>) -> bool {
        let doc = payload
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .unwrap_or(Value::Null);
        self.matches(&doc)
    }

    pub fn matches(&self, doc: &Value) -> bool {
        match self {
            Filter::Eq { field, value } => lookup(doc, field).is_some_and(|v| v == value),
            Filter::In { field, values } => lookup(doc, field).is_some_and(|v| values.contains(v)),
            Filter::Range {
                field,
                gt,
                gte,
                lt,
                lte,
            } => lookup(doc, field).and_then(Value::as_f64).is_some_and(|x| {
                gt.is_none_or(|b| x > b)
                    && gte.is_none_or(|b| x >= b)
                    && lt.is_none_or(|b| x < b)
                    && lte.is_none_or(|b| x <= b)
            }),
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
            Filter::Not(f) => !f.matches(doc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let f = Filter::parse(r#"{"and": [{"eq": {"field": "lang", "value": "en"}}, {"not": {"range": {"field": "meta.year", "lt": 2000}}}]}"#).unwrap();
        assert!(f.matches_text(Some(r#"{"lang":"en","meta":{"year":2010}}"#)));
        assert!(!f.matches_text(Some(r#"{"lang":"en","meta":{"year":1990}}"#)));
        assert!(!f.matches_text(Some(r#"{"lang":"de","meta":{"year":2010}}"#)));
        assert!(!f.matches_text(None));
        let f = Filter::parse(r#"{"or": [{"in": {"field": "tag", "values": ["a", "b"]}}, {"range": {"field": "n", "gte": 3, "lte": 4}}]}"#).unwrap();
        assert!(f.matches_text(Some(r#"{"tag":"b"}"#)));
        assert!(f.matches_text(Some(r#"{"n":3.5}"#)));
        assert!(!f.matches_text(Some(r#"{"n":5,"tag":"c"}"#)));
        for bad in [
            r#"{"eq": {"field": "x"}}"#,
            r#"{"range": {"field": "x"}}"#,
            r#"{"and": []}"#,
            r#"{"bogus": 1}"#,
            "nope",
        ] {
            let e = Filter::parse(bad).unwrap_err().to_string();
            assert!(e.contains("filter"), "{e}");
        }
    }
}
