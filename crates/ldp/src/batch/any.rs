//! Batch entry points for the mechanism enums, `AnyFrequencyOracle` and
//! `AnyNumericMechanism`: each call goes to the concrete mechanism's kernel.
//!
//! Frequency oracles write different report shapes (a value, a seed and a
//! hash value, packed bits), so the enum's reports are `u64` words in one
//! layout, which [`AnyFrequencyOracle::report_from_slots`] turns back into a
//! [`FrequencyOutput`]. Callers that simulate or audit any oracle by name use
//! this one path instead of matching on the variant themselves.

use rand::CryptoRng;

use super::{FrequencyBatch, NumericBatch, check_len, check_values, whole_reports};
use crate::{
    AnyFrequencyOracle, AnyNumericMechanism, FrequencyOracle, FrequencyOutput, GridPoint, LdpError,
    OlhOutput, PackedBits,
};

/// Reports per call into a concrete kernel whose reports are widened into
/// words: large enough that each call's fresh random buffer is mostly used.
const CHUNK: usize = 1024;

/// Runs `kernel` over `out.len() / per` reports, `CHUNK` at a time, into a
/// buffer of the concrete kernel's reports, and widens each into its `per`
/// words of `out`. `kernel` gets the chunk's report range and its buffer.
fn widened<S: Copy>(
    out: &mut [u64],
    per: usize,
    empty: S,
    mut kernel: impl FnMut(std::ops::Range<usize>, &mut [S]) -> Result<(), LdpError>,
    widen: impl Fn(S, &mut [u64]),
) -> Result<(), LdpError> {
    let mut buffer = [empty; CHUNK];
    for (c, slots) in out.chunks_mut(CHUNK * per).enumerate() {
        let n = slots.len() / per;
        let reports = &mut buffer[..n];
        kernel(c * CHUNK..c * CHUNK + n, reports)?;
        for (words, &report) in slots.chunks_exact_mut(per).zip(reports.iter()) {
            widen(report, words);
        }
    }
    Ok(())
}

/// An OLH report as two words: the seed, then the hash value.
fn olh_words(report: OlhOutput, words: &mut [u64]) {
    words[0] = report.seed;
    words[1] = u64::from(report.value);
}

impl AnyFrequencyOracle {
    /// The report that a batch call wrote into `slots` (one report's
    /// [`FrequencyBatch::slots_per_report`] words); words that no batch call of
    /// this oracle writes are an [`LdpError::MalformedReport`]. Whether the
    /// values are in range is [`FrequencyOracle::is_valid_output`]'s to say.
    pub fn report_from_slots(&self, slots: &[u64]) -> Result<FrequencyOutput, LdpError> {
        let report = match (self, slots) {
            (Self::Grr(_) | Self::Hr(_) | Self::LGrr(_), &[value]) => {
                u32::try_from(value).ok().map(FrequencyOutput::Value)
            }
            (Self::Olh(_) | Self::LLh(_), &[seed, value]) => u32::try_from(value)
                .ok()
                .map(|value| FrequencyOutput::Hashed(OlhOutput { seed, value })),
            (Self::Unary(_) | Self::LUnary(_) | Self::DBitFlip(_), words)
                if words.len() == self.slots_per_report() =>
            {
                PackedBits::from_words(words.to_vec(), self.domain()).map(FrequencyOutput::Bits)
            }
            _ => None,
        };
        report.ok_or(LdpError::MalformedReport {
            expected: self.slots_per_report(),
            actual: slots.len(),
        })
    }
}

impl FrequencyBatch for AnyFrequencyOracle {
    /// Reports as words: a GRR or Hadamard report is its value, an OLH report
    /// its seed then its hash value, a unary report its packed bits.
    type Slot = u64;

    fn slots_per_report(&self) -> usize {
        match self {
            Self::Grr(_) | Self::Hr(_) | Self::LGrr(_) => 1,
            Self::Olh(_) | Self::LLh(_) => 2,
            Self::Unary(m) => m.slots_per_report(),
            Self::LUnary(m) => m.slots_per_report(),
            Self::DBitFlip(m) => m.slots_per_report(),
        }
    }

    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        values: &[u32],
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        let per = self.slots_per_report();
        check_len("output buffer (words)", values.len() * per, out.len())?;
        // Before anything is drawn, as for the concrete kernels: the chunks
        // below would each check only their own values.
        check_values(&values, self.domain())?;
        match self {
            Self::Unary(m) => m.perturb_batch(values, out, rng),
            Self::LUnary(m) => m.perturb_batch(values, out, rng),
            Self::DBitFlip(m) => m.perturb_batch(values, out, rng),
            Self::LGrr(m) => widened(
                out,
                per,
                0,
                |r, buf| m.perturb_batch(&values[r], buf, rng),
                |v, w| w[0] = u64::from(v),
            ),
            Self::LLh(m) => widened(
                out,
                per,
                OlhOutput { seed: 0, value: 0 },
                |r, buf| m.perturb_batch(&values[r], buf, rng),
                olh_words,
            ),
            Self::Grr(m) => widened(
                out,
                per,
                0,
                |r, buf| m.perturb_batch(&values[r], buf, rng),
                |v, w| w[0] = u64::from(v),
            ),
            Self::Hr(m) => widened(
                out,
                per,
                0,
                |r, buf| m.perturb_batch(&values[r], buf, rng),
                |v, w| w[0] = u64::from(v),
            ),
            Self::Olh(m) => widened(
                out,
                per,
                OlhOutput { seed: 0, value: 0 },
                |r, buf| m.perturb_batch(&values[r], buf, rng),
                olh_words,
            ),
        }
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        let per = self.slots_per_report();
        whole_reports(out.len(), per)?;
        match self {
            Self::Unary(m) => m.perturb_repeated(value, out, rng),
            Self::LUnary(m) => m.perturb_repeated(value, out, rng),
            Self::DBitFlip(m) => m.perturb_repeated(value, out, rng),
            Self::LGrr(m) => widened(
                out,
                per,
                0,
                |_, buf| m.perturb_repeated(value, buf, rng),
                |v, w| w[0] = u64::from(v),
            ),
            Self::LLh(m) => widened(
                out,
                per,
                OlhOutput { seed: 0, value: 0 },
                |_, buf| m.perturb_repeated(value, buf, rng),
                olh_words,
            ),
            Self::Grr(m) => widened(
                out,
                per,
                0,
                |_, buf| m.perturb_repeated(value, buf, rng),
                |v, w| w[0] = u64::from(v),
            ),
            Self::Hr(m) => widened(
                out,
                per,
                0,
                |_, buf| m.perturb_repeated(value, buf, rng),
                |v, w| w[0] = u64::from(v),
            ),
            Self::Olh(m) => widened(
                out,
                per,
                OlhOutput { seed: 0, value: 0 },
                |_, buf| m.perturb_repeated(value, buf, rng),
                olh_words,
            ),
        }
    }
}

impl NumericBatch for AnyNumericMechanism {
    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        xs: &[f64],
        out: &mut [GridPoint],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        match self {
            Self::Laplace(m) => m.perturb_batch(xs, out, rng),
            Self::Duchi(m) => m.perturb_batch(xs, out, rng),
            Self::Piecewise(m) => m.perturb_batch(xs, out, rng),
            Self::Hybrid(m) => m.perturb_batch(xs, out, rng),
            Self::OneBit(m) => m.perturb_batch(xs, out, rng),
            Self::LOneBit(m) => m.perturb_batch(xs, out, rng),
        }
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        x: f64,
        out: &mut [GridPoint],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        match self {
            Self::Laplace(m) => m.perturb_repeated(x, out, rng),
            Self::Duchi(m) => m.perturb_repeated(x, out, rng),
            Self::Piecewise(m) => m.perturb_repeated(x, out, rng),
            Self::Hybrid(m) => m.perturb_repeated(x, out, rng),
            Self::OneBit(m) => m.perturb_repeated(x, out, rng),
            Self::LOneBit(m) => m.perturb_repeated(x, out, rng),
        }
    }
}
