//! Post-processing of frequency estimates: clipping and projection onto the probability simplex.
//!
//! Post-processing cannot weaken differential privacy, but it trades the
//! estimates' unbiasedness for lower error and valid distributions, so Hush
//! always reports it beside the unbiased estimate, never instead of it.

/// Clips every estimate to `[0, 1]`.
pub fn clip_unit(estimates: &[f64]) -> Vec<f64> {
    estimates.iter().map(|f| f.clamp(0.0, 1.0)).collect()
}

/// Norm-Sub: the Euclidean projection of the estimates onto the probability simplex.
///
/// Finds the shift `delta` such that `sum_v max(f_v - delta, 0) = 1` and returns
/// `max(f_v - delta, 0)`: negative and small estimates go to zero, the rest move
/// by the same amount, and the result sums to one. Wang, Lopuhaä-Zwakenberg,
/// Chen, Li, Ding, Chen, "Locally Differentially Private Frequency Estimation
/// with Consistency", NDSS 2020 (Norm-Sub); the sort-based exact solution is
/// Duchi, Shalev-Shwartz, Singer, Chandra, ICML 2008.
///
/// Non-finite estimates are treated as zero. An empty input returns an empty vector.
pub fn norm_sub(estimates: &[f64]) -> Vec<f64> {
    if estimates.is_empty() {
        return Vec::new();
    }
    let clean: Vec<f64> = estimates
        .iter()
        .map(|&f| if f.is_finite() { f } else { 0.0 })
        .collect();
    let mut sorted = clean.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut delta = 0.0;
    for (i, &f) in sorted.iter().enumerate() {
        cumulative += f;
        let candidate = (cumulative - 1.0) / (i as f64 + 1.0);
        if f - candidate > 0.0 {
            delta = candidate;
        }
    }
    clean.iter().map(|&f| (f - delta).max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_sub_projects_onto_the_simplex() {
        let p = norm_sub(&[0.5, 0.7, -0.1, 0.1]);
        // delta = 0.1: [0.4, 0.6, 0, 0].
        let want = [0.4, 0.6, 0.0, 0.0];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{p:?}");
        }
        let already = norm_sub(&[0.25, 0.25, 0.5]);
        assert!(
            already
                .iter()
                .zip([0.25, 0.25, 0.5])
                .all(|(a, b)| (a - b).abs() < 1e-12)
        );
        // Sums below one are raised uniformly.
        let low = norm_sub(&[0.1, 0.2]);
        assert!((low[0] - 0.45).abs() < 1e-12 && (low[1] - 0.55).abs() < 1e-12);
        assert!(norm_sub(&[]).is_empty());
        assert_eq!(clip_unit(&[-0.5, 0.5, 1.5]), vec![0.0, 0.5, 1.0]);
    }
}
