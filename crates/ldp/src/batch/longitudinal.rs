//! The two-layer mechanisms in batches: the permanent layer through its
//! one-layer kernel, then the instantaneous layer over those outputs through
//! the same engines (GRR's threshold comparisons, the bit slicer for unary
//! vectors and bits). Each output has the law of the scalar `perturb`, which
//! draws both layers from one generator: the layers are independent draws
//! either way.

use rand::{CryptoRng, Rng};

use super::bits::BitSlicer;
use super::buffer::RandomBuffer;
use super::numeric::binary_kernel;
use super::unary::flip_rows;
use super::{FrequencyBatch, Inputs, check_len, check_values, dispatch, whole_reports};
use crate::longitudinal::TwoLayer;
use crate::{
    DBitFlipPm, FrequencyOracle, GridPoint, Grr, LGrr, LLh, LOneBitMean, LUnary, LdpError,
    OlhOutput, PackedBits,
};

/// Reports per call of the instantaneous GRR kernel.
const CHUNK: usize = 1024;

/// The instantaneous GRR layer over permanent values already in `out`, in place.
fn second_grr<R: CryptoRng + ?Sized>(
    inst: &Grr,
    out: &mut [u32],
    rng: &mut R,
) -> Result<(), LdpError> {
    let mut permanent = [0u32; CHUNK];
    for chunk in out.chunks_mut(CHUNK) {
        let permanent = &mut permanent[..chunk.len()];
        permanent.copy_from_slice(chunk);
        inst.perturb_batch(permanent, chunk, rng)?;
    }
    Ok(())
}

impl FrequencyBatch for LGrr {
    type Slot = u32;

    fn slots_per_report(&self) -> usize {
        1
    }

    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        values: &[u32],
        out: &mut [u32],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        self.permanent_layer().perturb_batch(values, out, rng)?;
        second_grr(self.instantaneous_layer(), out, rng)
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [u32],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        self.permanent_layer().perturb_repeated(value, out, rng)?;
        second_grr(self.instantaneous_layer(), out, rng)
    }
}

/// The instantaneous unary layer over permanent rows already in `out`, in place:
/// a permanent 1 stays 1 with `one`, a permanent 0 becomes 1 with `zero`.
fn second_unary<R: CryptoRng + ?Sized>(oracle: &LUnary, out: &mut [u64], rng: &mut R) {
    let (one, zero) = oracle.instantaneous_thresholds();
    let slicer = BitSlicer::new(one, zero);
    let (per, len) = (PackedBits::words_for(oracle.domain()), oracle.domain());
    dispatch::vectorized(
        #[inline(always)]
        || flip_rows(&slicer, out, per, len, rng),
    );
}

impl FrequencyBatch for LUnary {
    type Slot = u64;

    fn slots_per_report(&self) -> usize {
        PackedBits::words_for(self.domain())
    }

    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        values: &[u32],
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        self.permanent_layer().perturb_batch(values, out, rng)?;
        second_unary(self, out, rng);
        Ok(())
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        self.permanent_layer().perturb_repeated(value, out, rng)?;
        second_unary(self, out, rng);
        Ok(())
    }
}

/// dBitFlipPM's instantaneous layer, report by report over the permanent rows
/// in `out` (its reports are a few sampled positions: nothing to slice).
fn second_dbitflip<R: CryptoRng + ?Sized>(
    oracle: &DBitFlipPm,
    out: &mut [u64],
    rng: &mut R,
) -> Result<(), LdpError> {
    let per = oracle.slots_per_report();
    for row in out.chunks_exact_mut(per) {
        let permanent = PackedBits::from_words(row.to_vec(), oracle.domain()).ok_or(
            LdpError::MalformedReport {
                expected: per,
                actual: row.len(),
            },
        )?;
        row.copy_from_slice(oracle.instantaneous(&permanent, rng)?.words());
    }
    Ok(())
}

impl FrequencyBatch for DBitFlipPm {
    type Slot = u64;

    fn slots_per_report(&self) -> usize {
        PackedBits::words_for(self.domain())
    }

    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        values: &[u32],
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        self.permanent_layer().perturb_batch(values, out, rng)?;
        second_dbitflip(self, out, rng)
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        self.permanent_layer().perturb_repeated(value, out, rng)?;
        second_dbitflip(self, out, rng)
    }
}

/// L-LH through its scalar layers: its cost is in the estimator's hashing, not here.
fn llh_reports<R: CryptoRng + ?Sized>(
    oracle: &LLh,
    values: impl Inputs<u32>,
    out: &mut [OlhOutput],
    rng: &mut R,
) -> Result<(), LdpError> {
    check_values(&values, oracle.domain())?;
    for (k, o) in out.iter_mut().enumerate() {
        *o = oracle.perturb(values.at(k), rng)?;
    }
    Ok(())
}

impl FrequencyBatch for LLh {
    type Slot = OlhOutput;

    fn slots_per_report(&self) -> usize {
        1
    }

    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        values: &[u32],
        out: &mut [OlhOutput],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        check_len("output buffer (reports)", values.len(), out.len())?;
        llh_reports(self, values, out, rng)
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [OlhOutput],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        let count = whole_reports(out.len(), 1)?;
        llh_reports(self, super::Repeat { value, count }, out, rng)
    }
}

/// Inputs per pass of the two-layer 1BitMean kernel.
const MEAN_CHUNK: usize = 512;

/// Two-layer 1BitMean: each input's alpha-point rounding from 53 fresh bits,
/// the permanent bit through the 1BitMean kernel at that grid position, then
/// the instantaneous flip of 64 bits per word through the bit slicer.
#[inline(always)]
fn lonebit_kernel<R: Rng + ?Sized>(
    m: &LOneBitMean,
    xs: impl Inputs<f64>,
    out: &mut [GridPoint],
    rng: &mut R,
) -> Result<(), LdpError> {
    let keep = m.keep_threshold();
    let slicer = BitSlicer::new(keep, keep.complement());
    let steps = f64::from(m.steps());
    let mut positions = [0f64; MEAN_CHUNK];
    let mut alphas = [0u64; MEAN_CHUNK];
    let mut words = [0u64; MEAN_CHUNK / 64];
    for (c, chunk) in out.chunks_mut(MEAN_CHUNK).enumerate() {
        let (n, first) = (chunk.len(), c * MEAN_CHUNK);
        RandomBuffer::new(rng, 8 * n).take_u64s(&mut alphas[..n]);
        for (k, (p, &a)) in positions[..n].iter_mut().zip(&alphas[..n]).enumerate() {
            let alpha = (a >> 11) as f64 / (1u64 << 53) as f64;
            *p = f64::from(m.coarse(xs.at(first + k), alpha)?) / steps;
        }
        binary_kernel(m.unit_core(), &positions[..n], chunk, rng)?;
        let per = n.div_ceil(64);
        let words = &mut words[..per];
        words.fill(0);
        for (k, o) in chunk.iter().enumerate() {
            words[k / 64] |= (o.index as u64 & 1) << (k % 64);
        }
        flip_rows(&slicer, words, per, n as u32, rng);
        for (k, o) in chunk.iter_mut().enumerate() {
            o.index = ((words[k / 64] >> (k % 64)) & 1) as i64;
        }
    }
    Ok(())
}

numeric_kernel!(LOneBitMean, |m, xs, out, rng| lonebit_kernel(
    m, xs, out, rng
));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LUnaryVariant, NoiseRng, Range};
    use rand::SeedableRng;

    /// The dispatched copy and the baseline copy give the same reports.
    #[test]
    fn every_copy_of_a_two_layer_kernel_computes_the_same_reports() {
        let seeded = || NoiseRng::seed_from_u64(9);
        let values: Vec<u32> = (0..3000).map(|i| i * 7 % 100).collect();
        let m = LUnary::new(LUnaryVariant::Osue, 4.0, 2.0, 100).unwrap();
        let per = m.slots_per_report();
        let (mut a, mut b) = (
            vec![0u64; values.len() * per],
            vec![0u64; values.len() * per],
        );
        m.perturb_batch(&values, &mut a, &mut seeded()).unwrap();
        let mut rng = seeded();
        m.permanent_layer()
            .perturb_batch(&values, &mut b, &mut rng)
            .unwrap();
        let (one, zero) = m.instantaneous_thresholds();
        flip_rows(&BitSlicer::new(one, zero), &mut b, per, 100, &mut rng);
        assert_eq!(a, b);

        let mean = LOneBitMean::new(4.0, 2.0, Range::UNIT).unwrap();
        let xs: Vec<f64> = (0..3000).map(|i| f64::from(i) / 3000.0).collect();
        let (mut a, mut b) = (
            vec![
                GridPoint {
                    branch: 0,
                    index: 0
                };
                xs.len()
            ],
            vec![
                GridPoint {
                    branch: 0,
                    index: 0
                };
                xs.len()
            ],
        );
        crate::NumericBatch::perturb_batch(&mean, &xs, &mut a, &mut seeded()).unwrap();
        lonebit_kernel(&mean, &xs[..], &mut b, &mut seeded()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn padding_lanes_stay_zero() {
        let m = LUnary::new(LUnaryVariant::Sue, 1.0, 0.5, 70).unwrap();
        let mut out = vec![0u64; 50 * m.slots_per_report()];
        m.perturb_repeated(3, &mut out, &mut NoiseRng::seed_from_u64(1))
            .unwrap();
        for row in out.chunks_exact(2) {
            assert_eq!(row[1] >> 6, 0, "lanes past 70 are padding");
        }
    }
}
