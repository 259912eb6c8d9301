//! `.npy` input: f32, f16, f64 and bf16 stored as uint16 (little-endian), any shape, C or Fortran
//! order; values come back as f32 in C (row-major) order.
//!
//! npyz interprets the header (dtype, shape, order); around it we check what it lets pass: the
//! magic, the version (1, 2 or 3), a header that fits in the file and ends in a newline, a dict
//! with exactly the keys `descr`, `fortran_order` and `shape` (as numpy requires), a plain
//! little-endian dtype we read, and a data section of exactly `product(shape) x itemsize` bytes.
//! Every error names the file.

use std::io::Read;
use std::path::Path;

use npyz::{DType, Endianness, NpyFile, NpyHeader, Order, TypeChar};

/// Reads a whole `.npy` file; returns the values in C order (a Fortran-order file is
/// transposed while reading) and the shape.
pub fn read(path: &Path) -> Result<(Vec<f32>, Vec<usize>), String> {
    let name = path.display();
    let io = |e: std::io::Error| format!("{name}: {e}");
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let head = read_header_bytes(&mut file, file_len).map_err(|e| format!("{name}: {e}"))?;
    let header = NpyHeader::from_reader(&head[..])
        .map_err(|e| format!("{name}: not a valid .npy header: {e}"))?;
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("{name}: shape dimension {d} is too large"))
        })
        .collect::<Result<_, _>>()?;
    let (kind, item_size) = element(&header.dtype()).map_err(|e| format!("{name}: {e}"))?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(item_size).map(|b| (n, b)));
    let shape_text = format!("{shape:?}");
    let Some((count, data_bytes)) = count else {
        return Err(format!("{name}: shape {shape_text} is too large"));
    };
    let have = file_len - head.len() as u64;
    if have != data_bytes as u64 {
        return Err(format!(
            "{name}: shape {shape_text} of {} needs {data_bytes} data bytes, the file holds {have}",
            header.dtype().descr().trim_matches('\'')
        ));
    }
    let data = std::io::BufReader::new(file);
    let npy = NpyFile::with_header(header, data);
    let order = npy.order();
    let values = kind.read(npy).map_err(io)?;
    debug_assert_eq!(values.len(), count);
    let values = match order {
        Order::C => values,
        Order::Fortran => fortran_to_c(&values, &shape),
    };
    Ok((values, shape))
}

/// The element types we read, each with its conversion to f32.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    F32,
    F16,
    F64,
    /// bf16 has no numpy dtype; it travels as its raw 16 bits in a uint16 array.
    Bf16Bits,
}

impl Kind {
    fn read<R: Read>(self, npy: NpyFile<R>) -> std::io::Result<Vec<f32>> {
        Ok(match self {
            Kind::F32 => npy.into_vec::<f32>()?,
            Kind::F16 => widen(npy.into_vec::<half::f16>()?, f32::from),
            Kind::F64 => widen(npy.into_vec::<f64>()?, |v| v as f32),
            Kind::Bf16Bits => widen(
                npy.into_vec::<u16>()?,
                metavec_core::score::compact::bf16_to_f32,
            ),
        })
    }
}

fn widen<T>(v: Vec<T>, f: impl Fn(T) -> f32) -> Vec<f32> {
    v.into_iter().map(f).collect()
}

/// The element kind and its size in bytes, or why the dtype is refused.
fn element(dtype: &DType) -> Result<(Kind, usize), String> {
    let supported = "supported: <f4, <f2, <f8, or bf16 bits as <u2";
    let DType::Plain(t) = dtype else {
        return Err(format!(
            "dtype {} is a structured dtype ({supported})",
            dtype.descr()
        ));
    };
    let kind = match (t.type_char(), t.size_field()) {
        (TypeChar::Float, 4) => Kind::F32,
        (TypeChar::Float, 2) => Kind::F16,
        (TypeChar::Float, 8) => Kind::F64,
        (TypeChar::Uint, 2) => Kind::Bf16Bits,
        _ => return Err(format!("dtype {t} is not supported ({supported})")),
    };
    if t.endianness() != Endianness::Little {
        return Err(format!(
            "dtype {t} is not little-endian ({supported}; numpy: a.astype(a.dtype.newbyteorder('<')))"
        ));
    }
    Ok((kind, t.size_field() as usize))
}

/// The magic, version, header length and header text, checked; leaves `file` at the data.
fn read_header_bytes(file: &mut std::fs::File, file_len: u64) -> Result<Vec<u8>, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    let mut head = vec![0u8; 8];
    file.read_exact(&mut head)
        .map_err(|_| "not a .npy file (shorter than its magic)".to_string())?;
    if &head[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let len_bytes = match (head[6], head[7]) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (major, minor) => {
            return Err(format!(
                "npy format version {major}.{minor} is not supported (1.0, 2.0 or 3.0)"
            ))
        }
    };
    let mut len = [0u8; 4];
    file.read_exact(&mut len[..len_bytes])
        .map_err(|_| "the header length is cut short".to_string())?;
    let text_len = u64::from(u32::from_le_bytes(len));
    let start = 8 + len_bytes as u64;
    if start + text_len > file_len {
        return Err(format!(
            "the header claims {text_len} bytes, the file has {} after the preamble",
            file_len.saturating_sub(start)
        ));
    }
    head.extend_from_slice(&len[..len_bytes]);
    let at = head.len();
    head.resize(at + text_len as usize, 0);
    file.read_exact(&mut head[at..])
        .map_err(|e| format!("reading the header: {e}"))?;
    check_dict(&head[at..])?;
    Ok(head)
}

/// The header text is a Python dict literal with exactly `descr`, `fortran_order` and `shape`,
/// ended by a newline (npyz accepts extra keys and a missing newline; numpy does not).
fn check_dict(text: &[u8]) -> Result<(), String> {
    let Some((&b'\n', body)) = text.split_last() else {
        return Err("the header does not end in a newline".into());
    };
    let body = std::str::from_utf8(body).map_err(|_| "the header is not text".to_string())?;
    let value: py_literal::Value = body
        .trim_end_matches([' ', '\0'])
        .parse()
        .map_err(|e| format!("the header is not a Python literal: {e}"))?;
    let py_literal::Value::Dict(entries) = value else {
        return Err("the header is not a dict".into());
    };
    let mut keys: Vec<String> = entries
        .iter()
        .map(|(k, _)| match k {
            py_literal::Value::String(s) => Ok(s.clone()),
            other => Err(format!("the header has a key {other} that is not a string")),
        })
        .collect::<Result<_, _>>()?;
    keys.sort();
    if keys != ["descr", "fortran_order", "shape"] {
        return Err(format!(
            "the header has keys {keys:?}, expected exactly descr, fortran_order and shape"
        ));
    }
    // npyz multiplies the dimensions unchecked: bound the element count first.
    let shape = entries
        .iter()
        .find(|(k, _)| matches!(k, py_literal::Value::String(s) if s == "shape"))
        .map(|(_, v)| v);
    if let Some(py_literal::Value::Tuple(dims) | py_literal::Value::List(dims)) = shape {
        let mut count = 1u64;
        for d in dims {
            let d = match d {
                py_literal::Value::Integer(i) => i.to_string().parse::<u64>().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("shape entry {d} is not a non-negative integer"))?;
            count = count.checked_mul(d).ok_or_else(|| {
                let dims: Vec<String> = dims.iter().map(ToString::to_string).collect();
                format!("shape ({}) is too large", dims.join(", "))
            })?;
        }
    }
    Ok(())
}

/// Reorders a Fortran-order (first index fastest) array of `shape` into C order (last index
/// fastest): walks the C-order multi-index and tracks its Fortran offset.
fn fortran_to_c<T: Copy>(values: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 || values.is_empty() {
        return values.to_vec();
    }
    let mut fstride = Vec::with_capacity(shape.len());
    let mut s = 1;
    for &d in shape {
        fstride.push(s);
        s *= d;
    }
    let mut out = Vec::with_capacity(values.len());
    let mut idx = vec![0usize; shape.len()];
    let mut off = 0usize;
    for _ in 0..values.len() {
        out.push(values[off]);
        for axis in (0..shape.len()).rev() {
            idx[axis] += 1;
            off += fstride[axis];
            if idx[axis] < shape[axis] {
                break;
            }
            off -= fstride[axis] * shape[axis];
            idx[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A header as numpy writes it: the dict, spaces to a 64-byte boundary, a newline.
    fn header(version: u8, dict: &str) -> Vec<u8> {
        let pre = if version == 1 { 10 } else { 12 };
        let mut h = dict.as_bytes().to_vec();
        while !(pre + h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&h);
        out
    }

    fn dict(descr: &str, fortran: bool, shape: &[usize]) -> String {
        format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({}), }}",
            if fortran { "True" } else { "False" },
            shape.iter().map(|d| format!("{d},")).collect::<String>()
        )
    }

    fn file(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let mut out = header(1, &dict(descr, fortran, shape));
        out.extend_from_slice(data);
        out
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn read_bytes(bytes: &[u8]) -> Result<(Vec<f32>, Vec<usize>), String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        std::fs::write(&p, bytes).unwrap();
        let r = read(&p);
        if let Err(e) = &r {
            assert!(e.starts_with(&p.display().to_string()), "{e}");
        }
        r
    }

    /// C-order offset -> Fortran-order offset by index arithmetic (independent of the walk).
    fn as_fortran<T: Copy + Default>(c: &[T], shape: &[usize]) -> Vec<T> {
        let mut f = vec![T::default(); c.len()];
        for (lin, &v) in c.iter().enumerate() {
            let (mut rest, mut off, mut stride) = (lin, 0, 1);
            let mut idx = vec![0; shape.len()];
            for a in (0..shape.len()).rev() {
                idx[a] = rest % shape[a];
                rest /= shape[a];
            }
            for a in 0..shape.len() {
                off += idx[a] * stride;
                stride *= shape[a];
            }
            f[off] = v;
        }
        f
    }

    #[test]
    fn reads_f32_f16_f64_and_bf16_bits() {
        let vals = [1.0f32, -2.5, 0.125, 3.0];
        let f16: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect();
        let f64: Vec<u8> = vals
            .iter()
            .flat_map(|v| f64::from(*v).to_le_bytes())
            .collect();
        let want = (vals.to_vec(), vec![2, 2]);
        assert_eq!(
            read_bytes(&file("<f4", false, &[2, 2], &f32_bytes(&vals))).unwrap(),
            want
        );
        assert_eq!(
            read_bytes(&file("<f2", false, &[2, 2], &f16)).unwrap(),
            want
        );
        assert_eq!(
            read_bytes(&file("<u2", false, &[2, 2], &bf16)).unwrap(),
            want
        );
        assert_eq!(
            read_bytes(&file("<f8", false, &[2, 2], &f64)).unwrap(),
            want
        );
        for v in [2, 3] {
            let mut b = header(v, &dict("<f4", false, &[4]));
            b.extend_from_slice(&f32_bytes(&vals));
            assert_eq!(read_bytes(&b).unwrap(), (vals.to_vec(), vec![4]));
        }
    }

    /// Bytes as numpy 1.26 writes `np.save(p, np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)))`.
    #[test]
    fn fortran_order_is_transposed_into_c_order() {
        let mut b = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let text = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        b.extend_from_slice(text.as_bytes());
        b.extend(std::iter::repeat_n(b' ', 118 - text.len() - 1));
        b.push(b'\n');
        assert_eq!(b.len(), 128);
        b.extend_from_slice(&f32_bytes(&[0., 3., 1., 4., 2., 5.]));
        assert_eq!(
            read_bytes(&b).unwrap(),
            (vec![0., 1., 2., 3., 4., 5.], vec![2, 3])
        );
        // A 1-d Fortran array is its C array.
        let b = file("<f4", true, &[3], &f32_bytes(&[7., 8., 9.]));
        assert_eq!(read_bytes(&b).unwrap().0, vec![7., 8., 9.]);
    }

    proptest! {
        #[test]
        fn fortran_and_c_files_of_one_array_read_the_same(
            shape in prop::collection::vec(1usize..5, 1..5),
            seed in any::<u32>(),
            f16 in any::<bool>(),
        ) {
            let n: usize = shape.iter().product();
            let c: Vec<f32> = (0..n).map(|i| (i as f32) * 0.5 - (seed % 97) as f32).collect();
            let f = as_fortran(&c, &shape);
            let descr = if f16 { "<f2" } else { "<f4" };
            let enc = |v: &[f32]| -> Vec<u8> {
                if f16 {
                    v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()
                } else {
                    f32_bytes(v)
                }
            };
            let from_c = read_bytes(&file(descr, false, &shape, &enc(&c))).unwrap();
            let from_f = read_bytes(&file(descr, true, &shape, &enc(&f))).unwrap();
            prop_assert_eq!(&from_c.1, &shape);
            prop_assert_eq!(&from_c, &from_f);
            prop_assert_eq!(from_c.0.len(), n);
        }

        /// Any byte string: an error or a read, never a panic; and any byte of a good file's
        /// header, changed, still never panics.
        #[test]
        fn damaged_headers_are_errors_not_panics(
            at in 0usize..64,
            byte in any::<u8>(),
            cut in 0usize..160,
        ) {
            let mut b = file("<f4", false, &[2, 3], &f32_bytes(&[1., 2., 3., 4., 5., 6.]));
            b[at] = byte;
            let _ = read_bytes(&b);
            b.truncate(cut);
            let _ = read_bytes(&b);
        }
    }

    #[test]
    fn every_part_of_the_header_is_checked() {
        let data = f32_bytes(&[1., 2., 3., 4., 5., 6.]);
        let good = file("<f4", false, &[2, 3], &data);
        assert!(read_bytes(&good).is_ok());
        let err = |b: &[u8]| read_bytes(b).unwrap_err();
        let with_dict = |d: &str| {
            let mut b = header(1, d);
            b.extend_from_slice(&data);
            b
        };
        let mut bad_magic = good.clone();
        bad_magic[1] = b'X';
        assert!(err(&bad_magic).contains("magic"));
        let mut v4 = good.clone();
        v4[6] = 4;
        assert!(err(&v4).contains("version 4.0"));
        assert!(err(&good[..5]).contains("magic"));
        assert!(err(&good[..9]).contains("header length"));
        assert!(err(&good[..40]).contains("header claims"));
        let mut no_newline = good.clone();
        no_newline[127] = b' ';
        assert!(err(&no_newline).contains("newline"));
        assert!(err(&with_dict(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}"
        ))
        .contains("expected exactly"));
        assert!(err(&with_dict("{'descr': '<f4', 'shape': (2, 3)}")).contains("expected exactly"));
        assert!(err(&with_dict(
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}"
        ))
        .contains("not a valid .npy header"));
        assert!(err(&with_dict(
            "{'descr': '<f4', 'fortran_order': False, 'shape': 6}"
        ))
        .contains("not a valid .npy header"));
        assert!(err(&with_dict("[1, 2]")).contains("not a dict"));
        assert!(err(&with_dict("{'descr': ")).contains("not a Python literal"));
        for descr in ["<i4", "|u1", "<c8"] {
            assert!(
                err(&file(descr, false, &[6], &data)).contains("not supported"),
                "{descr}"
            );
        }
        assert!(err(&file(">f4", false, &[6], &data)).contains("not little-endian"));
        assert!(err(&with_dict(
            "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (3,), }"
        ))
        .contains("structured"));
        // The data must be exactly product(shape) x itemsize bytes.
        let e = err(&file("<f4", false, &[2, 4], &data));
        assert!(e.contains("needs 32 data bytes, the file holds 24"), "{e}");
        let e = err(&file("<f4", false, &[2, 2], &data));
        assert!(e.contains("needs 16 data bytes, the file holds 24"), "{e}");
        let e = err(&file("<f4", false, &[1 << 40, 1 << 40], &data));
        assert!(e.contains("too large"), "{e}");
        // A zero-size array is empty, not an error.
        assert_eq!(
            read_bytes(&file("<f4", false, &[0, 3], &[])).unwrap(),
            (vec![], vec![0, 3])
        );
    }
}
