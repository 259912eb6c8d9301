//! `.npy` input: f32, f16 and bf16 stored as uint16, any shape; values come back as f32.

use std::path::Path;

use npyz::NpyFile;

/// Reads a whole `.npy` file; returns the values (row-major) and the shape.
pub fn read(path: &Path) -> Result<(Vec<f32>, Vec<usize>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let npy = NpyFile::new(std::io::BufReader::new(file))
        .map_err(|e| format!("{}: not a .npy file: {e}", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype().descr();
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let values: Vec<f32> = match dtype.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f4" => npy.into_vec::<f32>().map_err(err)?,
        "f2" => npy
            .into_vec::<half::f16>()
            .map_err(err)?
            .into_iter()
            .map(f32::from)
            .collect(),
        // bf16 has no numpy dtype; it travels as its raw 16 bits in a uint16 array.
        "u2" => npy
            .into_vec::<u16>()
            .map_err(err)?
            .into_iter()
            .map(metavec_core::score::compact::bf16_to_f32)
            .collect(),
        "f8" => npy
            .into_vec::<f64>()
            .map_err(err)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => {
            return Err(format!(
                "{}: dtype {other} is not supported (f32, f16, f64, or bf16 as uint16)",
                path.display()
            ))
        }
    };
    Ok((values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, dtype: &str, shape: &[u64], bytes: &[u8]) {
        let header = format!(
            "{{'descr': '{dtype}', 'fortran_order': False, 'shape': ({}), }}",
            shape.iter().map(|d| format!("{d},")).collect::<String>()
        );
        let mut h = header.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(bytes);
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn reads_f32_f16_and_bf16_bits() {
        let dir = tempfile::tempdir().unwrap();
        let vals = [1.0f32, -2.5, 0.125, 3.0];
        let p = dir.path().join("a.npy");
        write(
            &p,
            "<f4",
            &[2, 2],
            &vals
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        assert_eq!(read(&p).unwrap(), (vals.to_vec(), vec![2, 2]));
        write(
            &p,
            "<f2",
            &[4],
            &vals
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect::<Vec<_>>(),
        );
        assert_eq!(read(&p).unwrap().0, vals.to_vec());
        write(
            &p,
            "<u2",
            &[1, 4],
            &vals
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
                .collect::<Vec<_>>(),
        );
        assert_eq!(read(&p).unwrap(), (vals.to_vec(), vec![1, 4]));
        write(&p, "<i4", &[1], &[0, 0, 0, 0]);
        assert!(read(&p).unwrap_err().contains("not supported"));
    }
}
