//! Documents as the engine receives and returns them, and their validation.

use std::collections::HashSet;

use crate::config::{CollectionConfig, MAX_ID_BYTES};
use crate::error::{Error, Result};

/// Largest JSON payload per document, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// A document: an external id, exactly M_c vectors of D floats (row-major, Matryoshka order:
/// vector 0 the coarsest) and an optional JSON-object payload kept as the text the client sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub vectors: Vec<f32>,
    pub payload: Option<String>,
}

impl Document {
    pub fn new(id: impl Into<String>, vectors: Vec<f32>) -> Self {
        Document {
            id: id.into(),
            vectors,
            payload: None,
        }
    }

    pub fn with_payload(mut self, json: impl Into<String>) -> Self {
        self.payload = Some(json.into());
        self
    }
}

pub fn validate_id(id: &str, field: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(format!(
            "{field} is empty: ids are 1..={MAX_ID_BYTES} bytes"
        )));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!(
            "{field} is {} bytes long, the limit is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    Ok(())
}

/// Checks a row-major block of `count` vectors of `dim` floats for NaN, infinity and zero norm,
/// then scales every row to unit length. `what` names the block in messages ("document 3 (id \"x\")").
pub fn normalize_rows(values: &mut [f32], dim: usize, what: &str) -> Result<()> {
    for (row, v) in values.chunks_exact_mut(dim).enumerate() {
        if let Some(col) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "{what} vector {row} has a non-finite value {} at index {col}",
                v[col]
            )));
        }
        let norm = crate::score::dot_scalar(v, v).sqrt();
        if !(norm > 0.0 && norm.is_finite()) {
            return Err(Error::invalid(format!(
                "{what} vector {row} has zero (or overflowing) norm and cannot be normalised"
            )));
        }
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x *= inv);
    }
    Ok(())
}

/// Validates a batch against the collection and normalises its vectors in place. Nothing is
/// written unless the whole batch passes.
pub fn prepare_batch(docs: &mut [Document], cfg: &CollectionConfig) -> Result<()> {
    if docs.is_empty() {
        return Err(Error::invalid(
            "documents is empty: a batch needs at least one document",
        ));
    }
    let dim = cfg.dim as usize;
    let expected = cfg.doc_floats();
    let mut seen = HashSet::with_capacity(docs.len());
    for (i, d) in docs.iter_mut().enumerate() {
        validate_id(&d.id, &format!("documents[{i}].id"))?;
        if !seen.insert(d.id.clone()) {
            return Err(Error::invalid(format!(
                "documents[{i}].id {:?} appears twice in the batch",
                d.id
            )));
        }
        if d.vectors.len() != expected {
            return Err(Error::invalid(format!(
                "documents[{i}] (id {:?}) has {} floats, expected {} vectors x dim {} = {expected}",
                d.id,
                d.vectors.len(),
                cfg.doc_vectors,
                cfg.dim
            )));
        }
        if let Some(p) = &d.payload {
            validate_payload(p, &format!("documents[{i}].payload"))?;
        }
        normalize_rows(
            &mut d.vectors,
            dim,
            &format!("documents[{i}] (id {:?})", d.id),
        )?;
    }
    Ok(())
}

/// A payload must be a JSON object of at most [`MAX_PAYLOAD_BYTES`].
pub fn validate_payload(json: &str, field: &str) -> Result<()> {
    if json.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::invalid(format!(
            "{field} is {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
            json.len()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(Error::invalid(format!("{field} must be a JSON object"))),
        Err(e) => Err(Error::invalid(format!("{field} is not valid JSON: {e}"))),
    }
}
