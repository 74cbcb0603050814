//! The two-layer mechanisms in batches: the permanent layer through its
//! one-layer kernel, then the instantaneous layer over those outputs through
//! the same engines (GRR's threshold comparisons, the bit slicer for unary
//! vectors and bits). Each output has the law of the scalar `perturb`, which
//! draws both layers from one generator: the layers are independent draws
//! either way.

use rand::CryptoRng;

use super::bits::BitSlicer;
use super::unary::unary_rows;
use super::{FrequencyBatch, Inputs, check_len, check_values, dispatch, whole_reports};
use crate::longitudinal::TwoLayer;
use crate::{DBitFlipPm, FrequencyOracle, Grr, LGrr, LLh, LUnary, LdpError, OlhOutput, PackedBits};

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

impl LUnary {
    /// The instantaneous layer as a bit slicer: a permanent 1 stays 1 with the
    /// first threshold, a permanent 0 becomes 1 with the second.
    fn second_slicer(&self) -> BitSlicer {
        let (one, zero) = self.instantaneous_thresholds();
        BitSlicer::new(one, zero)
    }
}

/// Both layers in one pass over the dense lanes: the permanent unary vector
/// through the one-layer engine, then each lane again through the
/// instantaneous slicer before the copy into rows.
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
        check_len(
            "output buffer (words)",
            values.len() * self.slots_per_report(),
            out.len(),
        )?;
        let second = self.second_slicer();
        dispatch::vectorized(
            #[inline(always)]
            || unary_rows(self.permanent_layer(), values, out, Some(&second), rng),
        )
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        let count = whole_reports(out.len(), self.slots_per_report())?;
        let second = self.second_slicer();
        dispatch::vectorized(
            #[inline(always)]
            || {
                unary_rows(
                    self.permanent_layer(),
                    super::Repeat { value, count },
                    out,
                    Some(&second),
                    rng,
                )
            },
        )
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

#[cfg(test)]
mod tests {
    use super::super::numeric::lonebit_kernel;
    use super::*;
    use crate::{GridPoint, LUnaryVariant, NoiseRng, Range};
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
        let second = m.second_slicer();
        unary_rows(
            m.permanent_layer(),
            &values[..],
            &mut b,
            Some(&second),
            &mut seeded(),
        )
        .unwrap();
        assert_eq!(a, b);

        let mean = crate::LOneBitMean::new(4.0, 2.0, Range::UNIT).unwrap();
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
