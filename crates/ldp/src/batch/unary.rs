//! Unary encodings (SUE, OUE) and binary randomized response on bit-packed
//! vectors, through the bit-sliced engine.
//!
//! Unary reports are generated as one dense stream of lanes (report `i`, bit
//! `j` is lane `i d + j`) and then copied into word-aligned rows. For a small
//! domain this packs several reports into each 64-lane word: at `d = 16` a
//! word holds four reports, so the random words that decide a word's slowest
//! lane serve 64 bits instead of 16.

use rand::{CryptoRng, Rng};

use super::bits::{BLOCK, BitSlicer};
use super::buffer::RandomBuffer;
use super::{FrequencyBatch, Inputs, Repeat, check_len, check_values, dispatch, whole_reports};
use crate::{FrequencyOracle, Grr, LdpError, PackedBits, UnaryEncoding};

impl FrequencyBatch for UnaryEncoding {
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
        dispatch::vectorized(
            #[inline(always)]
            || unary_rows(self, values, out, None, rng),
        )
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [u64],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        let count = whole_reports(out.len(), self.slots_per_report())?;
        dispatch::vectorized(
            #[inline(always)]
            || unary_rows(self, Repeat { value, count }, out, None, rng),
        )
    }
}

/// Each report's lane for its value is selected (threshold `p`), every other lane has `q`.
///
/// With a `second` slicer each lane is then set again through it, the lane
/// just decided as its selection: the instantaneous layer of a two-layer
/// encoding, on the dense lanes before they are copied into rows, so a small
/// domain's padding costs no random words.
#[inline(always)]
pub(crate) fn unary_rows<R: Rng + ?Sized>(
    oracle: &UnaryEncoding,
    values: impl Inputs<u32>,
    out: &mut [u64],
    second: Option<&BitSlicer>,
    rng: &mut R,
) -> Result<(), LdpError> {
    let d = oracle.domain() as usize;
    check_values(&values, oracle.domain())?;
    let row_words = PackedBits::words_for(oracle.domain());
    let slicer = BitSlicer::new(oracle.p_threshold(), oracle.q_threshold());
    let lanes = values.count() * d;
    let per_word = slicer.bytes_per_word() + second.map_or(0, BitSlicer::bytes_per_word);
    let mut src = RandomBuffer::new(rng, lanes.div_ceil(64) * per_word);

    if 64 % d == 0 {
        // Small domains that divide a word (2 to 64 values): each report is one
        // aligned field of a word, so no report straddles words and the copy out
        // is a shift and a mask. A compile-time number of reports per word lets
        // the packing loops unroll and vectorize.
        match d {
            2 => small_rows::<32, R>(&slicer, second, &values, out, &mut src),
            4 => small_rows::<16, R>(&slicer, second, &values, out, &mut src),
            8 => small_rows::<8, R>(&slicer, second, &values, out, &mut src),
            16 => small_rows::<4, R>(&slicer, second, &values, out, &mut src),
            32 => small_rows::<2, R>(&slicer, second, &values, out, &mut src),
            // 64, the only other divisor of 64 that is a domain size.
            _ => small_rows::<1, R>(&slicer, second, &values, out, &mut src),
        }
        return Ok(());
    }
    // Rows are ORed together from block pieces, so they start from zero (which
    // also keeps the bits past `d` zero, as `PackedBits` requires).
    out.fill(0);
    let block_lanes = 64 * BLOCK;
    let mut dense = [0u64; BLOCK];
    for first in (0..lanes).step_by(block_lanes) {
        let len = block_lanes.min(lanes - first);
        let n = len.div_ceil(64);
        let mut live = [u64::MAX; BLOCK];
        if !len.is_multiple_of(64) {
            live[n - 1] = (1u64 << (len % 64)) - 1;
        }
        let (first_row, last_row) = (first / d, (first + len - 1) / d);
        let mut select = [0u64; BLOCK];
        for row in first_row..=last_row {
            let lane = row * d + values.at(row) as usize;
            if (first..first + len).contains(&lane) {
                let k = lane - first;
                select[k / 64] |= 1 << (k % 64);
            }
        }
        slicer.block(&select, &live, n, &mut dense, &mut src);
        if let Some(second) = second {
            let first_layer = dense;
            second.block(&first_layer, &live, n, &mut dense, &mut src);
        }
        for row in first_row..=last_row {
            let (start, end) = ((row * d).max(first), ((row + 1) * d).min(first + len));
            or_bits(
                &dense[..n],
                start - first,
                &mut out[row * row_words..(row + 1) * row_words],
                start - row * d,
                end - start,
            );
        }
    }
    Ok(())
}

/// Unary rows for a domain of `64 / PER` values: `PER` reports per lane word,
/// report `r` of a block in bits `(r % PER) d ..` of word `r / PER`.
#[inline(always)]
fn small_rows<const PER: usize, R: Rng + ?Sized>(
    slicer: &BitSlicer,
    second: Option<&BitSlicer>,
    values: &impl Inputs<u32>,
    out: &mut [u64],
    src: &mut RandomBuffer<'_, R>,
) {
    let d = 64 / PER;
    let mask = if d == 64 { u64::MAX } else { (1u64 << d) - 1 };
    let mut dense = [0u64; BLOCK];
    for (b, rows) in out.chunks_mut(BLOCK * PER).enumerate() {
        let first = b * BLOCK * PER;
        let n = rows.len().div_ceil(PER);
        let mut select = [0u64; BLOCK];
        let mut live = [u64::MAX; BLOCK];
        for (k, word) in select[..n].iter_mut().enumerate() {
            let row = first + k * PER;
            let count = PER.min(rows.len() - k * PER);
            let lane = |i: usize| 1 << (i * d + values.at(row + i) as usize);
            if count == PER {
                // A compile-time trip count: unrolled, without a loop test.
                *word = (0..PER).fold(0, |acc, i| acc | lane(i));
            } else {
                *word = (0..count).fold(0, |acc, i| acc | lane(i));
                live[k] = (1u64 << (count * d)) - 1;
            }
        }
        slicer.block(&select, &live, n, &mut dense, src);
        if let Some(second) = second {
            let first_layer = dense;
            second.block(&first_layer, &live, n, &mut dense, src);
        }
        let mut groups = rows.chunks_exact_mut(PER);
        for (group, &word) in groups.by_ref().zip(dense.iter()) {
            for (i, row) in group.iter_mut().enumerate() {
                *row = word >> (i * d) & mask;
            }
        }
        let tail = groups.into_remainder();
        if !tail.is_empty() {
            let word = dense[n - 1];
            for (i, row) in tail.iter_mut().enumerate() {
                *row = word >> (i * d) & mask;
            }
        }
    }
}

/// ORs `len` bits of `src` starting at bit `src_at` into `dst` starting at bit `dst_at`.
pub(crate) fn or_bits(src: &[u64], src_at: usize, dst: &mut [u64], dst_at: usize, len: usize) {
    let mut done = 0;
    while done < len {
        let (to, from) = (dst_at + done, src_at + done);
        // Up to the end of the destination word, so each step writes one word.
        let take = (len - done).min(64 - to % 64);
        let (w, b) = (from / 64, from % 64);
        let mut bits = src[w] >> b;
        if b != 0 && w + 1 < src.len() {
            bits |= src[w + 1] << (64 - b);
        }
        if take < 64 {
            bits &= (1u64 << take) - 1;
        }
        dst[to / 64] |= bits << (to % 64);
        done += take;
    }
}

impl Grr {
    /// Binary randomized response on packed bits: each bit of `input` is kept
    /// with the realized keep probability and flipped otherwise, into `out`.
    ///
    /// This is [`FrequencyOracle::perturb`] of a
    /// two-value GRR applied to every bit (a flip reports the one other value),
    /// 64 bits per word through the bit-sliced engine: a lane holding 1 is 1
    /// afterwards with probability `keep`, a lane holding 0 with `1 - keep`,
    /// which is the complementary threshold exactly.
    ///
    /// Errors if the domain is not 2 or the two vectors differ in length.
    pub fn perturb_packed<R: CryptoRng + ?Sized>(
        &self,
        input: &PackedBits,
        out: &mut PackedBits,
        rng: &mut R,
    ) -> Result<(), LdpError> {
        if self.domain() != 2 {
            return Err(LdpError::NotBinary(self.domain()));
        }
        check_len(
            "output bit vector (bits)",
            input.len() as usize,
            out.len() as usize,
        )?;
        let keep = self.keep_threshold();
        let slicer = BitSlicer::new(keep, keep.complement());
        out.words_mut().copy_from_slice(input.words());
        let (per, len) = (out.words().len(), out.len());
        dispatch::vectorized(
            #[inline(always)]
            || flip_rows(&slicer, out.words_mut(), per, len, rng),
        );
        Ok(())
    }
}

/// Sets every lane of `rows` again through `slicer`: a lane holding 1 is 1
/// afterwards with the slicer's selected threshold, a lane holding 0 with its
/// other one. `rows` is a whole number of rows of `per` words, each holding
/// `len` lanes (its padding lanes stay 0): packed randomized response, and the
/// instantaneous layer of the two-layer unary encodings.
#[inline(always)]
pub(crate) fn flip_rows<R: Rng + ?Sized>(
    slicer: &BitSlicer,
    rows: &mut [u64],
    per: usize,
    len: u32,
    rng: &mut R,
) {
    let mut src = RandomBuffer::new(rng, rows.len() * slicer.bytes_per_word());
    flip_rows_from(slicer, rows, per, len, &mut src);
}

/// [`flip_rows`] drawing from a buffer the caller already holds.
#[inline(always)]
pub(crate) fn flip_rows_from<R: Rng + ?Sized>(
    slicer: &BitSlicer,
    rows: &mut [u64],
    per: usize,
    len: u32,
    src: &mut RandomBuffer<'_, R>,
) {
    let tail = len % 64;
    let tail_mask = if tail == 0 {
        u64::MAX
    } else {
        (1u64 << tail) - 1
    };
    for (b, block) in rows.chunks_mut(BLOCK).enumerate() {
        let n = block.len();
        let mut select = [0u64; BLOCK];
        select[..n].copy_from_slice(block);
        let live: [u64; BLOCK] = std::array::from_fn(|k| {
            if (b * BLOCK + k) % per == per - 1 {
                tail_mask
            } else {
                u64::MAX
            }
        });
        let mut decided = [0u64; BLOCK];
        slicer.block(&select, &live, n, &mut decided, src);
        block.copy_from_slice(&decided[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoiseRng;
    use rand::SeedableRng;

    /// The dispatched copy (AVX2 where the CPU has it) and the baseline copy
    /// turn the same random bytes into the same bits, for every layout.
    #[test]
    fn every_copy_of_a_kernel_computes_the_same_bits() {
        let seeded = || NoiseRng::seed_from_u64(4);
        for d in [2u32, 16, 64, 100, 1024] {
            let m = UnaryEncoding::optimized(1.0, u64::from(d)).unwrap();
            let values: Vec<u32> = (0..777).map(|i| i * 5 % d).collect();
            let len = values.len() * m.slots_per_report();
            let (mut a, mut b) = (vec![0u64; len], vec![0u64; len]);
            m.perturb_batch(&values, &mut a, &mut seeded()).unwrap();
            unary_rows(&m, &values[..], &mut b, None, &mut seeded()).unwrap();
            assert_eq!(a, b, "d = {d}");
        }
        let rr = Grr::new(1.0, 2).unwrap();
        let mut input = PackedBits::zeros(1000);
        (0..1000).step_by(3).for_each(|i| input.set(i, true));
        let (mut a, mut b) = (PackedBits::zeros(1000), PackedBits::zeros(1000));
        rr.perturb_packed(&input, &mut a, &mut seeded()).unwrap();
        let keep = rr.keep_threshold();
        b.words_mut().copy_from_slice(input.words());
        let per = b.words().len();
        flip_rows(
            &BitSlicer::new(keep, keep.complement()),
            b.words_mut(),
            per,
            1000,
            &mut seeded(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn or_bits_moves_unaligned_ranges() {
        let src = [0xdead_beef_0123_4567u64, 0x89ab_cdef_fedc_ba98];
        for (src_at, dst_at, len) in [(0, 0, 128), (4, 0, 100), (60, 3, 68), (17, 63, 2)] {
            let mut dst = [0u64; 3];
            or_bits(&src, src_at, &mut dst, dst_at, len);
            for i in 0..len {
                let s = src[(src_at + i) / 64] >> ((src_at + i) % 64) & 1;
                let d = dst[(dst_at + i) / 64] >> ((dst_at + i) % 64) & 1;
                assert_eq!(s, d, "bit {i} of ({src_at}, {dst_at}, {len})");
            }
            let total: u32 = dst.iter().map(|w| w.count_ones()).sum();
            let expected: u64 = (0..len)
                .map(|i| src[(src_at + i) / 64] >> ((src_at + i) % 64) & 1)
                .sum();
            assert_eq!(
                u64::from(total),
                expected,
                "nothing written outside the range"
            );
        }
    }
}
