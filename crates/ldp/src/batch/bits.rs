//! Bit-sliced Bernoulli trials: 64 lanes of a `u64` decided at once by comparing
//! random words, bit by bit, with the binary expansion of an integer threshold.
//!
//! A lane succeeds when its uniform 64-bit number is below its threshold `t`.
//! Reading the number's bits from the most significant down, the comparison is
//! decided at the first bit where number and threshold differ: a 0 against a
//! threshold 1 is a success, a 1 against a 0 a failure, and equal bits leave
//! it open. Lane `i` of random word `k` is bit `k` of lane `i`'s number, so one
//! word advances all 64 comparisons, and a lane word is finished as soon as no
//! lane is open, after about `log2(64) + 1.3 = 7.3` words on average instead
//! of the 64 words that one draw per lane would take. The outcome is exactly
//! `Pr[success] = t / 2^64`: the same comparison as [`Threshold::sample`], on
//! random bits that no other lane sees.

use rand::Rng;

use super::buffer::{RandomBuffer, le_u64};
use crate::sampling::Threshold;

/// Lane words decided together: 1024 lanes, the OUE report of a 1024-value domain.
pub(crate) const BLOCK: usize = 16;

/// Bit positions every lane word steps through without a branch. Past eight,
/// a quarter of the words still have an open lane; the rest finish one word
/// at a time. Eight balances random words wasted on already-finished lane
/// words against branch mispredictions on the finishing loop.
const LOCKSTEP: usize = 8;

/// Two thresholds applied lane-wise: lanes marked "selected" succeed with
/// probability `selected / 2^64`, the others with `other / 2^64`.
///
/// One engine serves unary encodings (the true value's lane is selected:
/// `p` there, `q` elsewhere) and binary randomized response (lanes holding a
/// 1 are selected: `keep` there, `1 - keep` elsewhere).
#[derive(Debug, Clone)]
pub(crate) struct BitSlicer {
    /// `other[j]` is all ones when bit `63 - j` of the other lanes' threshold is set.
    other: [u64; 64],
    /// `diff[j]` is all ones when the two thresholds differ in bit `63 - j`.
    diff: [u64; 64],
    /// Bit positions that matter: past the lowest set bit of both thresholds, a
    /// lane still open equals its threshold so far, and the rest of its number
    /// cannot fall below the zeros left, so it fails.
    steps: usize,
}

impl BitSlicer {
    /// The engine for `selected` and `other` lane thresholds.
    pub(crate) fn new(selected: Threshold, other: Threshold) -> Self {
        let plane = |t: u64, j: usize| 0u64.wrapping_sub((t >> (63 - j)) & 1);
        let (s, o) = (selected.raw(), other.raw());
        BitSlicer {
            other: std::array::from_fn(|j| plane(o, j)),
            diff: std::array::from_fn(|j| plane(s ^ o, j)),
            steps: 64 - (s | o).trailing_zeros() as usize,
        }
    }

    /// About how many random bytes one lane word takes, for sizing buffer refills.
    pub(crate) fn bytes_per_word(&self) -> usize {
        8 * (LOCKSTEP.min(self.steps) + 1)
    }

    /// Decides the first `n` lane words (`n <= BLOCK`): lane `i` of word `w` is
    /// a success with the selected threshold if bit `i` of `select[w]` is set and
    /// with the other threshold otherwise; lanes outside `live[w]` come out 0.
    #[inline(always)]
    pub(crate) fn block<R: Rng + ?Sized>(
        &self,
        select: &[u64; BLOCK],
        live: &[u64; BLOCK],
        n: usize,
        out: &mut [u64; BLOCK],
        src: &mut RandomBuffer<'_, R>,
    ) {
        let lockstep = LOCKSTEP.min(self.steps);
        let mut hit = [0u64; BLOCK];
        let mut open = *live;
        let (select, hit_n, open_n) = (&select[..n], &mut hit[..n], &mut open[..n]);

        // Every lane word takes the first positions together: straight-line
        // bit operations over arrays, which the compiler vectorizes.
        src.ensure(8 * lockstep * n);
        let random = src.bytes();
        for j in 0..lockstep {
            let (other, diff) = (self.other[j], self.diff[j]);
            let words = random[8 * j * n..8 * (j + 1) * n].chunks_exact(8);
            for (((h, u), s), r) in hit_n
                .iter_mut()
                .zip(open_n.iter_mut())
                .zip(select)
                .zip(words)
            {
                let r = le_u64(r);
                let t = other ^ (s & diff);
                *h |= *u & t & !r;
                *u &= !(r ^ t);
            }
        }
        src.consume(8 * lockstep * n);

        // The few lane words still open finish one random word at a time.
        for ((h, u), s) in hit_n.iter_mut().zip(open_n.iter()).zip(select) {
            let mut open_lanes = *u;
            let mut j = lockstep;
            while open_lanes != 0 && j < self.steps {
                let r = src.word();
                let t = self.other[j] ^ (s & self.diff[j]);
                *h |= open_lanes & t & !r;
                open_lanes &= !(r ^ t);
                j += 1;
            }
        }
        out[..n].copy_from_slice(hit_n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    use crate::batch::replay::Replay;
    use rand::RngExt;

    /// One lane word against replayed random words: lane `i` must decide exactly
    /// `r_i < t_i`, where `r_i` is bit `i` of the words read most significant first.
    fn check_against_scalar(selected: u64, other: u64, select: u64, live: u64, words: &[u64]) {
        let slicer = BitSlicer::new(Threshold::from_raw(selected), Threshold::from_raw(other));
        let mut rng = Replay::of_words(words);
        let mut src = RandomBuffer::new(&mut rng, 0);
        let mut out = [0u64; BLOCK];
        let mut sel = [0u64; BLOCK];
        sel[0] = select;
        let mut liv = [0u64; BLOCK];
        liv[0] = live;
        slicer.block(&sel, &liv, 1, &mut out, &mut src);
        for i in 0..64 {
            let r = (0..64).fold(0u64, |acc, j| acc | ((words[j] >> i) & 1) << (63 - j));
            let t = if select >> i & 1 == 1 {
                selected
            } else {
                other
            };
            let expected = live >> i & 1 == 1 && r < t;
            assert_eq!(
                out[0] >> i & 1 == 1,
                expected,
                "lane {i}: r = {r:#x}, t = {t:#x}"
            );
        }
    }

    #[test]
    fn every_lane_decides_like_the_scalar_comparison() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for round in 0..2000 {
            let other: u64 = rng.random();
            // Thresholds that agree on a long prefix, so lanes of both kinds go deep.
            let selected = match round % 3 {
                0 => rng.random(),
                1 => other ^ (1 << (round % 64)),
                _ => other,
            };
            let select: u64 = rng.random();
            let live = if round % 5 == 0 {
                rng.random()
            } else {
                u64::MAX
            };
            // The first `depth` words follow every lane's threshold bit for bit, so
            // the comparison stays open that long (64: every lane ties and fails).
            let depth = round % 66;
            let words: Vec<u64> = (0..600)
                .map(|j| {
                    if j < depth.min(64) {
                        let bit = |t: u64| 0u64.wrapping_sub((t >> (63 - j)) & 1);
                        (bit(selected) & select) | (bit(other) & !select)
                    } else {
                        rng.random()
                    }
                })
                .collect();
            check_against_scalar(selected, other, select, live, &words);
        }
    }

    #[test]
    fn degenerate_thresholds_decide_without_randomness() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut src = RandomBuffer::new(&mut rng, 0);
        let never = BitSlicer::new(Threshold::from_raw(0), Threshold::from_raw(0));
        let mut out = [7u64; BLOCK];
        never.block(
            &[u64::MAX; BLOCK],
            &[u64::MAX; BLOCK],
            BLOCK,
            &mut out,
            &mut src,
        );
        assert!(out.iter().all(|&w| w == 0));
        assert_eq!(never.steps, 0);
    }

    #[test]
    fn one_half_takes_one_word_and_dead_lanes_stay_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut src = RandomBuffer::new(&mut rng, 0);
        let half = Threshold::from_raw(1 << 63);
        let slicer = BitSlicer::new(half, half);
        assert_eq!(slicer.steps, 1);
        let mut out = [0u64; BLOCK];
        let live = [0x0000_ffff_0000_ffffu64; BLOCK];
        let mut ones = 0u32;
        for _ in 0..100 {
            slicer.block(&[0; BLOCK], &live, BLOCK, &mut out, &mut src);
            assert!(out.iter().all(|&w| w & !live[0] == 0));
            ones += out.iter().map(|w| w.count_ones()).sum::<u32>();
        }
        // 100 * 16 * 32 live lanes at 1/2: mean 25600, sd 80; allow 5 sd.
        assert!((f64::from(ones) - 25_600.0).abs() < 400.0, "{ones}");
    }
}
