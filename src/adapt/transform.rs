//! The fitted, catalogue-adapted projection: PCA-whitening (with eigenvalue
//! shrinkage) of the model-feature head of each raw vector, the colour tail
//! kept as is, the result L2-normalised. Fitted on the stored catalogue only,
//! never on labels.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

use super::AdaptError;

/// Namespace of the content-derived transform ids.
const TRANSFORM_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6164_7265_632d_7478_2d76_3100_0000_0008);

/// What to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitParams {
    /// Length of the head (model features) of each raw vector; the rest is the tail.
    pub head_dim: usize,
    /// Weight of the L2-normalised tail beside the whitened head (0 drops it).
    pub tail_weight: f32,
    /// Principal components kept (capped at the head length).
    pub dims: usize,
    /// Eigenvalue shrinkage toward their mean: 0 = full whitening, 1 = PCA rotation only.
    pub shrinkage: f32,
}

/// A fitted transform (an artefact: saved as JSON beside the vectors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// Content-derived id, part of the embedding space id.
    pub id: String,
    /// Raw vector length this applies to.
    pub input_dim: usize,
    /// Head length (whitened part).
    pub head_dim: usize,
    /// Tail weight.
    pub tail_weight: f32,
    /// Output components of the head.
    pub dims: usize,
    /// Shrinkage the fit used.
    pub shrinkage: f32,
    /// Products the fit saw.
    pub fitted_on: usize,
    /// Mean of the L2-normalised heads.
    pub mean: Vec<f32>,
    /// `dims` × `head_dim`, row-major: eigenvectors scaled by 1/√(shrunk eigenvalue).
    pub projection: Vec<f32>,
}

impl Transform {
    /// Fit on raw vectors (all of length `input_dim`).
    pub fn fit(raw: &[Vec<f32>], params: FitParams) -> Result<Self, AdaptError> {
        let n = raw.len();
        let input_dim = raw.first().map(Vec::len).unwrap_or(0);
        let d = params.head_dim;
        if n < 2 || d == 0 || d > input_dim {
            return Err(AdaptError::Fit(format!("need ≥2 vectors with ≥{d} values, got {n}")));
        }
        if raw.iter().any(|v| v.len() != input_dim) {
            return Err(AdaptError::Fit("raw vectors of different lengths".into()));
        }
        let heads: Vec<Vec<f64>> = raw.iter().map(|v| unit(&v[..d])).collect();
        let mut mean = vec![0f64; d];
        for h in &heads {
            mean.iter_mut().zip(h).for_each(|(m, x)| *m += x / n as f64);
        }
        let centred = DMatrix::from_fn(n, d, |i, j| heads[i][j] - mean[j]);
        let cov = centred.tr_mul(&centred) / (n as f64 - 1.0);
        let eigen = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let average = eigen.eigenvalues.iter().map(|l| l.max(0.0)).sum::<f64>() / d as f64;
        let dims = params.dims.min(d);
        let s = params.shrinkage.clamp(0.0, 1.0) as f64;
        let mut projection = Vec::with_capacity(dims * d);
        for &c in &order[..dims] {
            let lambda = (1.0 - s) * eigen.eigenvalues[c].max(0.0) + s * average;
            let scale = 1.0 / (lambda + 1e-9).sqrt();
            projection.extend(eigen.eigenvectors.column(c).iter().map(|x| (x * scale) as f32));
        }
        let mean: Vec<f32> = mean.into_iter().map(|x| x as f32).collect();
        let id = content_id(dims, &mean, &projection, params);
        Ok(Self {
            id,
            input_dim,
            head_dim: d,
            tail_weight: params.tail_weight,
            dims,
            shrinkage: params.shrinkage,
            fitted_on: n,
            mean,
            projection,
        })
    }

    /// Output vector length.
    pub fn output_dim(&self) -> usize {
        self.dims + self.tail_len()
    }

    fn tail_len(&self) -> usize {
        if self.tail_weight > 0.0 { self.input_dim - self.head_dim } else { 0 }
    }

    /// Project one raw vector into this space (L2-normalised).
    pub fn apply(&self, raw: &[f32]) -> Result<Vec<f32>, AdaptError> {
        if raw.len() != self.input_dim {
            return Err(AdaptError::Dimension { expected: self.input_dim, got: raw.len() });
        }
        let head: Vec<f32> = unit(&raw[..self.head_dim]).into_iter().map(|x| x as f32).collect();
        let centred: Vec<f32> = head.iter().zip(&self.mean).map(|(x, m)| x - m).collect();
        let mut out: Vec<f32> =
            self.projection.chunks_exact(self.head_dim).map(|row| crate::recommend::dot(row, &centred)).collect();
        crate::embed::l2_normalise(&mut out);
        if self.tail_len() > 0 {
            out.extend(unit(&raw[self.head_dim..]).into_iter().map(|x| x as f32 * self.tail_weight));
            crate::embed::l2_normalise(&mut out);
        }
        Ok(out)
    }
}

fn unit(v: &[f32]) -> Vec<f64> {
    let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    v.iter().map(|x| if norm > 0.0 { *x as f64 / norm } else { 0.0 }).collect()
}

/// `pcaw<dims>-<12 hex>` from the fitted numbers: same fit, same id.
fn content_id(dims: usize, mean: &[f32], projection: &[f32], params: FitParams) -> String {
    let mut bytes = Vec::with_capacity(4 * (mean.len() + projection.len()) + 16);
    bytes.extend(params.tail_weight.to_le_bytes());
    bytes.extend((params.head_dim as u64).to_le_bytes());
    for x in mean.iter().chain(projection) {
        bytes.extend(x.to_le_bytes());
    }
    let hash = uuid::Uuid::new_v5(&TRANSFORM_ID_NAMESPACE, &bytes).simple().to_string();
    format!("pcaw{dims}-{}", &hash[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<Vec<f32>> {
        // Anisotropic 3-d head around (1, 1, 1) plus a 2-value tail.
        (0..200)
            .map(|i| {
                let t = i as f32 * 0.37;
                vec![1.0 + 0.5 * t.sin(), 1.0 + 0.05 * (2.0 * t).cos(), 1.0 + 0.01 * t.cos(), (i % 2) as f32, 1.0]
            })
            .collect()
    }

    #[test]
    fn whitened_heads_have_unit_variance_and_outputs_unit_length() {
        let raw = data();
        let params = FitParams { head_dim: 3, tail_weight: 0.0, dims: 2, shrinkage: 0.0 };
        let t = Transform::fit(&raw, params).expect("fit");
        assert_eq!(t.output_dim(), 2);
        // Before the final normalisation each kept component has variance ≈ 1.
        for row in t.projection.chunks_exact(3) {
            let proj: Vec<f64> = raw
                .iter()
                .map(|v| {
                    let h = unit(&v[..3]);
                    row.iter().zip(h.iter().zip(&t.mean)).map(|(p, (x, m))| *p as f64 * (x - *m as f64)).sum()
                })
                .collect();
            let var = proj.iter().map(|x| x * x).sum::<f64>() / (proj.len() - 1) as f64;
            assert!((var - 1.0).abs() < 1e-3, "variance {var}");
        }
        let y = t.apply(&raw[5]).expect("apply");
        assert!((y.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn the_id_follows_the_content_and_the_tail_is_kept() {
        let raw = data();
        let params = FitParams { head_dim: 3, tail_weight: 1.0, dims: 3, shrinkage: 0.1 };
        let a = Transform::fit(&raw, params).expect("fit");
        let b = Transform::fit(&raw, params).expect("fit");
        assert_eq!(a.id, b.id);
        assert_eq!(a.output_dim(), 5);
        let c = Transform::fit(&raw[..100], params).expect("fit");
        assert_ne!(a.id, c.id);
        assert!(matches!(a.apply(&[1.0]), Err(AdaptError::Dimension { .. })));
    }
}
