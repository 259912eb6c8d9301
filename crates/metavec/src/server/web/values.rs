//! The two value forms a JSON body may write in more than one way, with their own parsers so
//! that a bad one is refused with a message saying what is expected (not serde's "did not match
//! any variant"): budgets and vectors. The schema enums beside them are what `/openapi.json`
//! shows; they are never built.

use base64::Engine as _;
use metavec_api::pb;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A budget: `[r_q, r_c]`, `"4x8"` or `{"r_q": 4, "r_c": 8}`.
#[derive(Clone, Copy, Debug)]
pub struct BudgetJson(pub pb::Budget);

/// The budget forms the API accepts (documentation only; see [`BudgetJson`]).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Budget {
    /// `[r_q, r_c]`
    Pair(Vec<u32>),
    /// `"4x8"`
    Text(String),
}

impl<'de> Deserialize<'de> for BudgetJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BudgetJson;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a budget as [r_q, r_c], \"R_QxR_C\" (e.g. \"4x8\") or {\"r_q\", \"r_c\"}",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<BudgetJson, E> {
                crate::cli::parse_budget(s)
                    .map(BudgetJson)
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<BudgetJson, A::Error> {
                let r_q = a
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let r_c = a
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if a.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(BudgetJson(pb::Budget { r_q, r_c }))
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<BudgetJson, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Named {
                    r_q: u32,
                    r_c: u32,
                }
                let n = Named::deserialize(de::value::MapAccessDeserializer::new(a))?;
                Ok(BudgetJson(pb::Budget {
                    r_q: n.r_q,
                    r_c: n.r_c,
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// Vectors: nested arrays `[[...], [...]]` (one row a vector), or the compact form `{"dtype":
/// "f32"|"bf16"|"f16", "shape": [n, d], "data": "<base64 of the raw little-endian values>"}`.
#[derive(Debug)]
pub struct VectorsJson(pub pb::Vectors);

/// The vector forms: what a body may send (parsed by [`VectorsJson`]) and what Get and Scroll
/// answer (nested, or packed f32 when asked).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Vectors {
    /// One array of numbers a vector.
    Nested(Vec<Vec<f32>>),
    Packed(PackedVectors),
}

impl Vectors {
    /// Stored vectors (f32 values) as an answer gives them.
    pub fn of(v: pb::Vectors, packed: bool) -> Vectors {
        if packed {
            let data: Vec<u8> = v.values.iter().flat_map(|x| x.to_le_bytes()).collect();
            return Vectors::Packed(PackedVectors {
                dtype: "f32".into(),
                shape: vec![v.count, v.dim],
                data: base64::engine::general_purpose::STANDARD.encode(data),
            });
        }
        let dim = v.dim.max(1) as usize;
        Vectors::Nested(v.values.chunks(dim).map(<[f32]>::to_vec).collect())
    }
}

/// Raw little-endian values in base64: a 64 x 2048 bf16 document is 350 KB of text instead of
/// about 1.3 MB of JSON numbers.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackedVectors {
    /// `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// `[count, dim]`.
    pub shape: Vec<u32>,
    /// Base64 (standard alphabet, padded) of count x dim values.
    pub data: String,
}

impl PackedVectors {
    fn into_pb<E: de::Error>(self) -> Result<pb::Vectors, E> {
        let [count, dim] = self.shape[..] else {
            return Err(E::custom(format!(
                "shape must be [count, dim], got {:?}",
                self.shape
            )));
        };
        let data = base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .map_err(|e| E::custom(format!("data is not base64: {e}")))?;
        let width = if self.dtype == "f32" { 4 } else { 2 };
        let want = (count as u64 * dim as u64).saturating_mul(width);
        if data.len() as u64 != want {
            return Err(E::custom(format!(
                "data has {} bytes, shape {count} x {dim} of {} is {want}",
                data.len(),
                self.dtype
            )));
        }
        let mut v = pb::Vectors {
            count,
            dim,
            ..Default::default()
        };
        match self.dtype.as_str() {
            "f32" => {
                v.values = data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            "bf16" => v.bf16 = data,
            "f16" => v.f16 = data,
            other => {
                return Err(E::custom(format!(
                    "dtype {other:?} is not one of \"f32\", \"bf16\", \"f16\""
                )))
            }
        }
        Ok(v)
    }
}

impl<'de> Deserialize<'de> for VectorsJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VectorsJson;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "vectors as nested arrays of numbers or {\"dtype\", \"shape\", \"data\"}",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<VectorsJson, A::Error> {
                let mut values = Vec::new();
                let (mut count, mut dim) = (0u32, None);
                while let Some(row) = a.next_element::<Vec<f32>>()? {
                    let d = *dim.get_or_insert(row.len());
                    if row.len() != d {
                        return Err(de::Error::custom(format!(
                            "row {count} has {} numbers, row 0 has {d}",
                            row.len()
                        )));
                    }
                    values.extend_from_slice(&row);
                    count += 1;
                }
                Ok(VectorsJson(pb::Vectors {
                    count,
                    dim: dim.unwrap_or(0) as u32,
                    values,
                    ..Default::default()
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<VectorsJson, A::Error> {
                PackedVectors::deserialize(de::value::MapAccessDeserializer::new(a))?
                    .into_pb()
                    .map(VectorsJson)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_in_three_forms() {
        for text in [r#"[4, 8]"#, r#""4x8""#, r#"{"r_q": 4, "r_c": 8}"#] {
            let b: BudgetJson = serde_json::from_str(text).unwrap();
            assert_eq!((b.0.r_q, b.0.r_c), (4, 8), "{text}");
        }
        for bad in [r#"[4]"#, r#"[4, 8, 1]"#, r#""4y8""#, r#"{"r_q": 4}"#, "-1"] {
            assert!(serde_json::from_str::<BudgetJson>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vectors_nested_and_packed_agree() {
        let nested: VectorsJson = serde_json::from_str("[[1, 2], [3, 4.5]]").unwrap();
        assert_eq!((nested.0.count, nested.0.dim), (2, 2));
        let raw: Vec<u8> = [1f32, 2.0, 3.0, 4.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let data = base64::engine::general_purpose::STANDARD.encode(raw);
        let text = format!(r#"{{"dtype": "f32", "shape": [2, 2], "data": "{data}"}}"#);
        let packed: VectorsJson = serde_json::from_str(&text).unwrap();
        assert_eq!(packed.0, nested.0);
        let answered = serde_json::to_string(&Vectors::of(nested.0.clone(), true)).unwrap();
        assert_eq!(
            serde_json::from_str::<VectorsJson>(&answered).unwrap().0,
            nested.0
        );
        let answered = serde_json::to_string(&Vectors::of(nested.0.clone(), false)).unwrap();
        assert_eq!(answered, "[[1.0,2.0],[3.0,4.5]]");
        let ragged = serde_json::from_str::<VectorsJson>("[[1, 2], [3]]").unwrap_err();
        assert!(
            ragged.to_string().contains("row 1 has 1 numbers"),
            "{ragged}"
        );
        let short = format!(r#"{{"dtype": "bf16", "shape": [2, 2], "data": "{data}"}}"#);
        let e = serde_json::from_str::<VectorsJson>(&short).unwrap_err();
        assert!(e.to_string().contains("data has 16 bytes"), "{e}");
    }
}
