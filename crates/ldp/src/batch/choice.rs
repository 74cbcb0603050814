//! Kernels that report one value per user: GRR, OLH and Hadamard response.
//!
//! Each report takes one uniform `u64`: its high 32 bits are compared with the
//! keep threshold's 32-bit prefix, its low 32 bits feed Lemire's method for the
//! other value. Both steps are branch-free; the main loop only records the
//! rare tie (probability `2^-32`) and rejection (below `d / 2^32`), and a
//! second pass finishes those reports with fresh bits: a tie continues the
//! comparison with [`Threshold::after_prefix`], a rejection redraws the
//! uniform. Neither changes the law, so every report is exact.

use rand::{CryptoRng, Rng};

use super::buffer::RandomBuffer;
use super::{FrequencyBatch, Inputs, Repeat, check_len, check_values, dispatch, whole_reports};
use crate::sampling::{NarrowUniform, Threshold, UniformBelow};
use crate::{FrequencyOracle, Grr, HadamardResponse, LdpError, Olh, OlhOutput};

/// Reports per pass: the random words of a pass stay in L1 with their outputs.
const CHUNK: usize = 256;

/// Flag bits of a report that the fast pass could not finish.
const TIE: u8 = 1;
const REJECTED: u8 = 2;

/// Randomized response over `0..g` around a center: keep it with probability
/// `keep`, otherwise report one of the `g - 1` other values uniformly.
#[derive(Debug, Clone, Copy)]
struct KeepOrOther {
    keep: Threshold,
    others: NarrowUniform,
}

impl KeepOrOther {
    fn new(keep: Threshold, others: UniformBelow) -> Result<Self, LdpError> {
        Ok(KeepOrOther {
            keep,
            // Domains and hash ranges are far below 2^32, so this never fails.
            others: others.narrow(32).ok_or(LdpError::Unrealizable(
                "a domain of 2^32 or more values has no batch kernel",
            ))?,
        })
    }

    /// The report for `center` from one uniform word, and what is left to fix.
    #[inline(always)]
    fn fast(self, word: u64, center: u32) -> (u32, u8) {
        let high = word >> 32;
        let (other, accepted) = self.others.map(word as u32);
        // Skipping over the center makes the other value uniform on the g - 1 others.
        let other = other + u32::from(other >= center);
        let (kept, open) = self.keep.prefix_trial(high, 32);
        let flags = u8::from(open) * TIE + u8::from(!accepted) * REJECTED;
        (if kept { center } else { other }, flags)
    }

    /// Finishes a report the fast pass flagged: `report` is what it wrote.
    #[cold]
    fn fix<R: Rng + ?Sized>(
        self,
        report: u32,
        center: u32,
        flags: u8,
        src: &mut RandomBuffer<'_, R>,
    ) -> u32 {
        // Without a tie the fast pass's decision stands; it reported the center
        // exactly when it kept it, since the other value is never the center.
        let kept = if flags & TIE != 0 {
            self.keep.after_prefix(32).sample(src)
        } else {
            report == center
        };
        if kept {
            center
        } else if flags & REJECTED != 0 {
            let other = self.others.sample(src);
            other + u32::from(other >= center)
        } else {
            // A tie was not kept by the fast pass, so it already wrote the other value.
            report
        }
    }
}

/// The [`FrequencyBatch`] entry points of an oracle whose report is one slot,
/// from its one kernel (generic over slices and repeated inputs): the same
/// length checks and AVX2 dispatch for GRR, OLH and Hadamard response.
macro_rules! one_slot_batch {
    ($oracle:ty, $slot:ty, $kernel:ident) => {
        impl FrequencyBatch for $oracle {
            type Slot = $slot;

            fn slots_per_report(&self) -> usize {
                1
            }

            fn perturb_batch<R: CryptoRng + ?Sized>(
                &self,
                values: &[u32],
                out: &mut [$slot],
                rng: &mut R,
            ) -> Result<(), LdpError> {
                check_len("output buffer (reports)", values.len(), out.len())?;
                dispatch::vectorized(
                    #[inline(always)]
                    || $kernel(self, values, out, rng),
                )
            }

            fn perturb_repeated<R: CryptoRng + ?Sized>(
                &self,
                value: u32,
                out: &mut [$slot],
                rng: &mut R,
            ) -> Result<(), LdpError> {
                let count = whole_reports(out.len(), 1)?;
                dispatch::vectorized(
                    #[inline(always)]
                    || $kernel(self, Repeat { value, count }, out, rng),
                )
            }
        }
    };
}

#[inline(always)]
fn grr_kernel<R: Rng + ?Sized>(
    grr: &Grr,
    values: impl Inputs<u32>,
    out: &mut [u32],
    rng: &mut R,
) -> Result<(), LdpError> {
    check_values(&values, grr.domain())?;
    let rr = KeepOrOther::new(grr.keep_threshold(), grr.others_sampler())?;
    let mut src = RandomBuffer::new(rng, 8 * out.len());
    let mut words = [0u64; CHUNK];
    let mut flags = [0u8; CHUNK];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let (words, flags) = (&mut words[..chunk.len()], &mut flags[..chunk.len()]);
        src.take_u64s(words);
        let mut any = 0u8;
        for (k, ((o, &w), f)) in chunk
            .iter_mut()
            .zip(words.iter())
            .zip(flags.iter_mut())
            .enumerate()
        {
            let (report, flag) = rr.fast(w, values.at(c * CHUNK + k));
            *o = report;
            *f = flag;
            any |= flag;
        }
        if any != 0 {
            for (k, (o, &f)) in chunk.iter_mut().zip(flags.iter()).enumerate() {
                if f != 0 {
                    *o = rr.fix(*o, values.at(c * CHUNK + k), f, &mut src);
                }
            }
        }
    }
    Ok(())
}

one_slot_batch!(Grr, u32, grr_kernel);

/// OLH: a whole chunk's seeds are drawn and hashed first (one tight loop of
/// multiplies and shifts), then randomized response runs over the hashes.
#[inline(always)]
fn olh_kernel<R: Rng + ?Sized>(
    olh: &Olh,
    values: impl Inputs<u32>,
    out: &mut [OlhOutput],
    rng: &mut R,
) -> Result<(), LdpError> {
    check_values(&values, olh.domain())?;
    let rr = KeepOrOther::new(olh.keep_threshold(), olh.others_sampler())?;
    let mut src = RandomBuffer::new(rng, 16 * out.len());
    let mut seeds = [0u64; CHUNK];
    let mut hashes = [0u32; CHUNK];
    let mut words = [0u64; CHUNK];
    let mut flags = [0u8; CHUNK];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let n = chunk.len();
        let (seeds, hashes, words, flags) = (
            &mut seeds[..n],
            &mut hashes[..n],
            &mut words[..n],
            &mut flags[..n],
        );
        // The seed is part of the report and must be a full uniform 64-bit word.
        src.take_u64s(seeds);
        src.take_u64s(words);
        for (k, (h, &s)) in hashes.iter_mut().zip(seeds.iter()).enumerate() {
            *h = olh.hash(s, values.at(c * CHUNK + k));
        }
        let mut any = 0u8;
        for ((((o, &s), &h), &w), f) in chunk
            .iter_mut()
            .zip(seeds.iter())
            .zip(hashes.iter())
            .zip(words.iter())
            .zip(flags.iter_mut())
        {
            let (value, flag) = rr.fast(w, h);
            *o = OlhOutput { seed: s, value };
            *f = flag;
            any |= flag;
        }
        if any != 0 {
            for ((o, &h), &f) in chunk.iter_mut().zip(hashes.iter()).zip(flags.iter()) {
                if f != 0 {
                    o.value = rr.fix(o.value, h, f, &mut src);
                }
            }
        }
    }
    Ok(())
}

one_slot_batch!(Olh, OlhOutput, olh_kernel);

/// Hadamard response without rejection: draw `y` uniform below `K`, and if it
/// lies in the wrong half, flip the lowest set bit of `v + 1` in it. That flip
/// changes the parity of `popcount((v + 1) & y)`, so it swaps `C_v` and its
/// complement one to one; the result is uniform on the half the keep decision
/// chose, which is the scalar rejection loop's law.
#[inline(always)]
fn hr_kernel<R: Rng + ?Sized>(
    hr: &HadamardResponse,
    values: impl Inputs<u32>,
    out: &mut [u32],
    rng: &mut R,
) -> Result<(), LdpError> {
    check_values(&values, hr.domain())?;
    let keep = hr.keep_threshold();
    let mask = u64::from(hr.order() - 1);
    let mut src = RandomBuffer::new(rng, 8 * out.len());
    let mut words = [0u64; CHUNK];
    let mut ties = [false; CHUNK];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let (words, ties) = (&mut words[..chunk.len()], &mut ties[..chunk.len()]);
        src.take_u64s(words);
        let mut any = false;
        for (k, ((o, &w), t)) in chunk
            .iter_mut()
            .zip(words.iter())
            .zip(ties.iter_mut())
            .enumerate()
        {
            let v = values.at(c * CHUNK + k);
            let (inside, open) = keep.prefix_trial(w >> 32, 32);
            let y = (w & mask) as u32;
            let flip = (v + 1) & (v + 1).wrapping_neg();
            *o = if HadamardResponse::in_set(v, y) == inside {
                y
            } else {
                y ^ flip
            };
            *t = open;
            any |= *t;
        }
        if any {
            for (k, (o, &t)) in chunk.iter_mut().zip(ties.iter()).enumerate() {
                // A tie was reported outside the set (the prefix was not below the
                // threshold's); the flip moves it inside if the rest decides so.
                if t && keep.after_prefix(32).sample(&mut src) {
                    let v = values.at(c * CHUNK + k);
                    *o ^= (v + 1) & (v + 1).wrapping_neg();
                }
            }
        }
    }
    Ok(())
}

one_slot_batch!(HadamardResponse, u32, hr_kernel);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::replay::Replay;
    use crate::{NoiseRng, OlhOutput};
    use rand::SeedableRng;

    /// The dispatched copy (AVX2 where the CPU has it) and the baseline copy of
    /// each kernel turn the same random bytes into the same reports.
    #[test]
    fn every_copy_of_a_kernel_computes_the_same_reports() {
        let values: Vec<u32> = (0..3000).map(|i| i * 7 % 1000).collect();
        let seeded = || NoiseRng::seed_from_u64(3);
        for eps in [0.5, 1.0, 6.0] {
            let grr = Grr::new(eps, 1000).unwrap();
            let (mut a, mut b) = (vec![0u32; values.len()], vec![0u32; values.len()]);
            grr.perturb_batch(&values, &mut a, &mut seeded()).unwrap();
            grr_kernel(&grr, &values[..], &mut b, &mut seeded()).unwrap();
            assert_eq!(a, b, "GRR eps {eps}");
            let hr = HadamardResponse::new(eps, 1000).unwrap();
            hr.perturb_batch(&values, &mut a, &mut seeded()).unwrap();
            hr_kernel(&hr, &values[..], &mut b, &mut seeded()).unwrap();
            assert_eq!(a, b, "HR eps {eps}");
            let olh = Olh::new(eps, 1000).unwrap();
            let zero = OlhOutput { seed: 0, value: 0 };
            let (mut a, mut b) = (vec![zero; values.len()], vec![zero; values.len()]);
            olh.perturb_batch(&values, &mut a, &mut seeded()).unwrap();
            olh_kernel(&olh, &values[..], &mut b, &mut seeded()).unwrap();
            assert_eq!(a, b, "OLH eps {eps}");
        }
    }

    fn grr_one(m: &Grr, v: u32, words: &[u64]) -> u32 {
        let mut out = [0u32; 1];
        grr_kernel(m, &[v][..], &mut out, &mut Replay::of_words(words)).unwrap();
        out[0]
    }

    #[test]
    fn a_tied_keep_prefix_continues_against_the_rest_of_the_threshold() {
        let m = Grr::new(1.0, 1000).unwrap();
        let keep = m.keep_threshold();
        let rest = keep.after_prefix(32).raw();
        let tie = keep.prefix(32) << 32 | 0x8000_0000;
        let other = m.others_sampler().narrow(32).unwrap().map(0x8000_0000).0;
        let other = other + u32::from(other >= 7);
        // The rest decides: below it keeps, at or above it reports the other value.
        assert_eq!(grr_one(&m, 7, &[tie, rest - 1]), 7);
        assert_eq!(grr_one(&m, 7, &[tie, rest]), other);
        // Without a tie no second word is read.
        assert_eq!(grr_one(&m, 7, &[(keep.prefix(32) - 1) << 32, u64::MAX]), 7);
    }

    #[test]
    fn a_rejected_uniform_is_redrawn_only_when_needed() {
        let m = Grr::new(1.0, 1000).unwrap();
        let narrow = m.others_sampler().narrow(32).unwrap();
        assert!(
            !narrow.map(0).1,
            "0 is in the rejection zone for 999 values"
        );
        let not_kept = u64::MAX << 32;
        // A rejected candidate is redrawn from the next word's high 32 bits.
        let next = 0x1234_5678u64 << 32;
        let (fresh, ok) = narrow.map(0x1234_5678);
        assert!(ok);
        assert_eq!(
            grr_one(&m, 3, &[not_kept, next]),
            fresh + u32::from(fresh >= 3)
        );
        // When the value is kept, the rejected candidate does not matter.
        assert_eq!(grr_one(&m, 3, &[0, next]), 3);
    }

    #[test]
    fn a_tied_hadamard_report_moves_into_the_set_when_the_rest_keeps_it() {
        let m = HadamardResponse::new(1.0, 100).unwrap();
        let keep = m.keep_threshold();
        let v = 5;
        let tie = keep.prefix(32) << 32 | 0x3;
        let run = |words: &[u64]| {
            let mut out = [0u32; 1];
            hr_kernel(&m, &[v][..], &mut out, &mut Replay::of_words(words)).unwrap();
            out[0]
        };
        let inside = run(&[tie, 0]);
        let outside = run(&[tie, u64::MAX]);
        assert!(HadamardResponse::in_set(v, inside));
        assert!(!HadamardResponse::in_set(v, outside));
        assert_eq!(inside ^ outside, (v + 1) & (v + 1).wrapping_neg());
    }
}
