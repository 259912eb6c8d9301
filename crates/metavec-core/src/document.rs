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

/// How far from 1 a row's squared norm may be for [`normalize_rows`] to keep it as it is: above
/// the rounding of a normalised row's f32 norm (~1e-6 at 4,096 dims), and a relative score error
/// of at most 5e-6.
pub const UNIT_NORM2_SLACK: f32 = 1e-5;

/// Checks a row-major block of `count` vectors of `dim` floats for NaN, infinity and zero norm,
/// then scales every row to unit length. `what` names the block in messages ("document 3 (id \"x\")").
///
/// Any finite row that is not all zeros is accepted: one whose squared norm overflows f32 (values
/// near 3e38) or falls where f32 loses precision (subnormal values) is normalised in f64. Rows in
/// the ordinary range take the f32 path, so their stored bits do not change. A row already of
/// unit length (squared norm within [`UNIT_NORM2_SLACK`] of 1, as every stored row is) is kept as
/// it is: normalising is idempotent, so a document read back and written again (an export loaded
/// back, a payload update) keeps its bits.
pub fn normalize_rows(values: &mut [f32], dim: usize, what: &str) -> Result<()> {
    // Below this squared norm, components whose squares underflow f32 could make up a visible
    // share of it (dim x f32::MIN_POSITIVE is < 1e-34 for any dim we accept).
    const F32_SAFE_NORM2: f32 = 1e-20;
    for (row, v) in values.chunks_exact_mut(dim).enumerate() {
        if let Some(col) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(format!(
                "{what} vector {row} has a non-finite value {} at index {col}",
                v[col]
            )));
        }
        let norm2 = crate::score::dot_scalar(v, v);
        if (norm2 - 1.0).abs() <= UNIT_NORM2_SLACK {
            continue;
        }
        if norm2.is_finite() && norm2 >= F32_SAFE_NORM2 {
            let inv = 1.0 / norm2.sqrt();
            v.iter_mut().for_each(|x| *x *= inv);
            continue;
        }
        // f64 holds the square of every finite f32 (and of every subnormal one) exactly enough.
        let norm = v
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            return Err(Error::invalid(format!(
                "{what} vector {row} is all zeros (zero norm) and cannot be normalised"
            )));
        }
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f64 {
        v.iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn huge_and_subnormal_rows_normalise_to_unit_length() {
        let tiny = f32::from_bits(1); // the smallest subnormal, ~1.4e-45
        let rows: [[f32; 4]; 5] = [
            [3e38, 3e38, -3e38, 1.0],
            [f32::MAX, 0.0, 0.0, 0.0],
            [tiny, 0.0, -tiny, 0.0],
            [1e-39, 2e-39, 0.0, 0.0],
            [1e-15, 0.0, 0.0, 0.0],
        ];
        for r in rows {
            let mut v = r.to_vec();
            normalize_rows(&mut v, 4, "q").unwrap_or_else(|e| panic!("{r:?}: {e}"));
            assert!((norm(&v) - 1.0).abs() < 1e-6, "{r:?} -> {v:?}");
            // The direction is kept: zeros stay zero, signs stay.
            for (a, b) in r.iter().zip(&v) {
                assert_eq!(*a == 0.0, *b == 0.0, "{r:?} -> {v:?}");
                assert!(*a == 0.0 || a.is_sign_negative() == b.is_sign_negative());
            }
        }
        let mut v = vec![3e38f32, 3e38, 0.0, 0.0];
        normalize_rows(&mut v, 4, "q").unwrap();
        assert!(
            (v[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6,
            "{v:?}"
        );
    }

    #[test]
    fn ordinary_rows_keep_their_f32_path_and_zero_rows_are_refused() {
        let mut v = vec![3.0f32, 4.0, 0.0, 0.0];
        normalize_rows(&mut v, 4, "q").unwrap();
        assert_eq!(v, [3.0 * (1.0 / 5.0f32), 4.0 * (1.0 / 5.0f32), 0.0, 0.0]);
        let mut z = vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, -0.0, 0.0];
        let e = normalize_rows(&mut z, 4, "query").unwrap_err().to_string();
        assert!(e.contains("query vector 1 is all zeros"), "{e}");
        let mut n = vec![1.0f32, f32::NAN, 0.0, 0.0];
        let e = normalize_rows(&mut n, 4, "query").unwrap_err().to_string();
        assert!(e.contains("non-finite value NaN at index 1"), "{e}");
    }
}
