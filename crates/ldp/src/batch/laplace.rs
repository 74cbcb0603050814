//! Discrete Laplace in batches: the mechanism's own integer CDF table, looked
//! up through a bucket table, with 32 random bits per sample in all but rare
//! cases.
//!
//! Each sample takes one uniform `u32`: 24 bits are the prefix of the uniform
//! number compared with the CDF thresholds, one bit is the sign, and 7 bits are
//! the prefix of the randomized-rounding trial. The magnitude is the number of
//! thresholds at or below the uniform number, exactly as
//! `DiscreteLaplace::sample_magnitude` counts them. With only the prefix known,
//! a threshold whose own 24-bit prefix is below it is certainly below the
//! number and one whose prefix is above it certainly above. The bucket table
//! answers for the top 16 bits of the prefix at once when no threshold's
//! prefix falls inside that bucket of 256 prefixes, which holds for all but at
//! most `L / 2^16` of the probability; the rest compare the prefixes near the
//! bucket, and a threshold with the very same prefix (probability at most
//! `L / 2^24`) is settled with 40 fresh bits. A number past the table, a `-0`
//! (rejected, as in the scalar sampler) and a tie of the rounding prefix are
//! finished by the scalar samplers on fresh bits, which keeps every sample's
//! law exactly the scalar one.

use std::sync::OnceLock;

use rand::Rng;

use super::buffer::RandomBuffer;
use super::{Inputs, for_flagged, map_finite};
use crate::sampling::{PrefixKey, Threshold};
use crate::{DiscreteLaplace, GridPoint, LdpError};

/// Bits of the uniform number known in the fast path.
const PREFIX_BITS: u32 = 24;
/// The bucket table splits the prefixes into `2^BUCKET_BITS` buckets of 256
/// (256 KiB of `u32` entries).
const BUCKET_BITS: u32 = 16;
/// Bucket entry fields: the count below the bucket in the low 16 bits, the
/// low 8 bits of a threshold's prefix inside the bucket in the next 8, and
/// whether the bucket holds one such threshold, or several.
const OFFSET_SHIFT: u32 = 16;
const ONE: u32 = 1 << 24;
const SEVERAL: u32 = 1 << 25;
/// Prefixes compared from a mixed bucket's first threshold on.
const WINDOW: usize = 7;
/// Bits of the randomized-rounding trial's prefix.
const ROUND_BITS: u32 = 7;
/// Samples per pass.
const CHUNK: usize = 64;

/// The CDF table of a [`DiscreteLaplace`] arranged for branch-free lookups:
/// the thresholds' 24-bit prefixes, and for each bucket of 256 prefixes how
/// many thresholds lie below it (a guide table after Chen and Asau, 1974,
/// fine enough that most buckets hold no threshold and answer alone).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LaplaceTable {
    /// `prefix[k]` is `cdf[k] >> 40`, then `WINDOW + 1` entries of `u32::MAX`
    /// so that a window never reads past the end.
    prefix: Vec<u32>,
    /// `bucket[b]` describes prefixes `b << 8 .. (b + 1) << 8`: how many
    /// thresholds' prefixes are below it, and the one threshold prefix inside
    /// it ([`ONE`] and its low bits) or that there are [`SEVERAL`].
    bucket: Vec<u32>,
}

/// A mechanism's [`LaplaceTable`], built on first use: it takes 256 KiB and a
/// few hundred microseconds, which only batch callers should pay (the agent
/// never batches).
#[derive(Debug, Clone, Default)]
pub(crate) struct LazyTable(OnceLock<LaplaceTable>);

impl LazyTable {
    /// The table for `cdf`, which must be the same table on every call.
    pub(crate) fn get_or_build(&self, cdf: &[u64]) -> &LaplaceTable {
        self.0.get_or_init(|| LaplaceTable::new(cdf))
    }
}

/// Built or not, the table is a function of the CDF, which the mechanism
/// compares itself; two mechanisms are equal whether or not either has batched.
impl PartialEq for LazyTable {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl LaplaceTable {
    /// Builds the lookup for `cdf` (strictly increasing, fewer than 2^16 entries).
    pub(crate) fn new(cdf: &[u64]) -> Self {
        assert!(
            cdf.len() < 1 << 16,
            "discrete Laplace tables are capped well below 2^16 entries"
        );
        let prefix: Vec<u32> = cdf
            .iter()
            .map(|&c| (c >> (64 - PREFIX_BITS)) as u32)
            .chain(std::iter::repeat_n(u32::MAX, WINDOW + 1))
            .collect();
        let shift = PREFIX_BITS - BUCKET_BITS;
        let real = &prefix[..cdf.len()];
        let bucket = (0..1u32 << BUCKET_BITS)
            .map(|b| {
                let below = real.partition_point(|&p| p < b << shift);
                let inside = real[below..].iter().take_while(|&&p| p >> shift == b);
                let (count, low) = inside.fold((0, 0), |(n, _), &p| (n + 1, p & 0xff));
                below as u32
                    | match count {
                        0 => 0,
                        1 => ONE | low << OFFSET_SHIFT,
                        _ => SEVERAL,
                    }
            })
            .collect();
        LaplaceTable { prefix, bucket }
    }

    /// How many thresholds lie below a number with 24-bit prefix `p`, and
    /// whether that count is certain and inside the table: one load and a
    /// comparison, right unless `p` ties with a threshold's prefix or shares
    /// its bucket with several (a branch-free guess for the main loop;
    /// [`LaplaceTable::window`] and [`LaplaceTable::magnitude`] settle the rest).
    #[inline(always)]
    fn lookup(&self, p: u32, len: usize) -> (usize, bool) {
        let entry = self.bucket[(p >> (PREFIX_BITS - BUCKET_BITS)) as usize];
        let (low, offset) = (p & 0xff, (entry >> OFFSET_SHIFT) & 0xff);
        let one = entry & ONE != 0;
        let k = (entry & 0xffff) as usize + usize::from(one && low > offset);
        let certain = entry & SEVERAL == 0 && !(one && low == offset) && k < len;
        (k, certain)
    }

    /// The count for a prefix in a mixed bucket, from the prefixes at and after
    /// the bucket's first threshold, and whether it is certain and inside the table.
    #[inline(always)]
    fn window(&self, p: u32, len: usize) -> (usize, bool) {
        let entry = self.bucket[(p >> (PREFIX_BITS - BUCKET_BITS)) as usize];
        let first = (entry & 0xffff) as usize;
        let Some(window) = self.prefix[first..].first_chunk::<{ WINDOW + 1 }>() else {
            unreachable!("the prefix table is padded by WINDOW + 1 entries past every count")
        };
        // Prefixes are sorted, so the ones below p are the window's first
        // `below`; the count is certain when none equals p and one lies above.
        let below = window.iter().take_while(|&&w| w < p).count();
        let k = first + below;
        let certain = below < WINDOW && window[below] != p && k < len;
        (k, certain)
    }

    /// `|Z|` for a uniform 64-bit number `u`: the number of thresholds at or
    /// below it, as `DiscreteLaplace::sample_magnitude` counts them, and past the
    /// table `L` plus a fresh magnitude from new words (memorylessness).
    fn magnitude<R: Rng + ?Sized>(
        &self,
        cdf: &[u64],
        mut u: u64,
        src: &mut RandomBuffer<'_, R>,
    ) -> u64 {
        let mut base = 0u64;
        loop {
            let p = (u >> (64 - PREFIX_BITS)) as u32;
            // Thresholds with a smaller prefix are below u, with a larger one above;
            // among those with the same prefix the full values decide.
            let entry = self.bucket[(p >> (PREFIX_BITS - BUCKET_BITS)) as usize];
            let mut k = (entry & 0xffff) as usize;
            while self.prefix[k] < p {
                k += 1;
            }
            while k < cdf.len() && cdf[k] <= u {
                k += 1;
            }
            if k < cdf.len() {
                return base + k as u64;
            }
            base += cdf.len() as u64;
            u = src.word();
        }
    }
}

/// Flags of a sample that the fast pass could not finish.
const ROUND_TIE: u8 = 1;
const MAGNITUDE_OPEN: u8 = 2;
const NEGATIVE_ZERO: u8 = 4;

#[inline(always)]
fn laplace_kernel<R: Rng + ?Sized>(
    m: &DiscreteLaplace,
    xs: impl Inputs<f64>,
    out: &mut [GridPoint],
    rng: &mut R,
) -> Result<(), LdpError> {
    let table = m.batch_table();
    let len = m.cdf_len();
    let mut src = RandomBuffer::new(rng, 4 * out.len());
    let mut words = [0u32; CHUNK];
    let mut floors = [0u32; CHUNK];
    let mut rounds = [PrefixKey::default(); CHUNK];
    let mut magnitudes = [0u32; CHUNK];
    let mut mixed = [0u8; CHUNK];
    let mut certain = [false; CHUNK];
    let mut values = [0i32; CHUNK];
    let mut flags = [0u8; CHUNK];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let n = chunk.len();
        let first = c * CHUNK;
        let (words, floors, rounds) = (&mut words[..n], &mut floors[..n], &mut rounds[..n]);
        let (magnitudes, mixed, certain, values, flags) = (
            &mut magnitudes[..n],
            &mut mixed[..n],
            &mut certain[..n],
            &mut values[..n],
            &mut flags[..n],
        );
        map_finite(&xs, first, floors, rounds, |x| {
            PrefixKey::rounding(m.grid_offset_finite(x), ROUND_BITS)
        })?;
        src.take_u32s(words);
        // The table lookups alone, so that everything else is plain vector
        // arithmetic; then the few prefixes in mixed buckets compare the
        // prefixes near them.
        for (((mag, mix), ok), &w) in magnitudes
            .iter_mut()
            .zip(mixed.iter_mut())
            .zip(certain.iter_mut())
            .zip(words.iter())
        {
            let (k, c) = table.lookup(w >> (32 - PREFIX_BITS), len);
            // The table holds fewer than 2^15 thresholds.
            (*mag, *mix, *ok) = (k as u32, u8::from(!c), c);
        }
        for_flagged(mixed, |k| {
            let (count, c) = table.window(words[k] >> (32 - PREFIX_BITS), len);
            (magnitudes[k], certain[k]) = (count as u32, c);
        });
        for k in 0..n {
            let w = words[k];
            let negative = (w >> ROUND_BITS) & 1 == 1;
            let (up, round_open) = rounds[k].trial(w & ((1 << ROUND_BITS) - 1));
            // Floors and magnitudes are at most 2^16, so the sum fits an i32.
            let magnitude = magnitudes[k] as i32;
            let noise = if negative { -magnitude } else { magnitude };
            values[k] = floors[k] as i32 + i32::from(up) + noise;
            flags[k] = u8::from(round_open) * ROUND_TIE
                + u8::from(!certain[k]) * MAGNITUDE_OPEN
                + u8::from(negative && magnitude == 0) * NEGATIVE_ZERO;
        }
        for (o, &v) in chunk.iter_mut().zip(values.iter()) {
            *o = GridPoint {
                branch: 0,
                index: i64::from(v),
            };
        }
        for_flagged(flags, |k| {
            let (floor, frac) = m.grid_position_finite(xs.at(first + k));
            chunk[k].index = finish(m, words[k], floor, Threshold::floor(frac), &mut src);
        });
    }
    Ok(())
}

/// Completes a flagged sample from its fast-pass word and fresh bits, deciding
/// every part the fast pass could not: the rounding trial if it was open, the
/// magnitude if the lookup was not certain, and a fresh draw for `-0`.
#[cold]
fn finish<R: Rng + ?Sized>(
    m: &DiscreteLaplace,
    w: u32,
    floor: i64,
    round: Threshold,
    src: &mut RandomBuffer<'_, R>,
) -> i64 {
    let r = u64::from(w & ((1 << ROUND_BITS) - 1));
    let (up, open) = round.prefix_trial(r, ROUND_BITS);
    let up = if open {
        round.after_prefix(ROUND_BITS).sample(src)
    } else {
        up
    };
    let p = w >> (32 - PREFIX_BITS);
    let table = m.batch_table();
    let (k, certain) = match table.lookup(p, m.cdf_len()) {
        (k, true) => (k, true),
        _ => table.window(p, m.cdf_len()),
    };
    let magnitude = match certain {
        true => k as u64,
        false => {
            // Fresh low bits complete the uniform number whose prefix is p.
            let u = u64::from(p) << (64 - PREFIX_BITS) | src.word() >> PREFIX_BITS;
            table.magnitude(m.cdf(), u, src)
        }
    };
    let negative = (w >> ROUND_BITS) & 1 == 1;
    let noise = if negative && magnitude == 0 {
        // The scalar sampler rejects -0 and draws magnitude and sign afresh.
        m.sample_noise(src)
    } else if negative {
        -(magnitude as i64)
    } else {
        magnitude as i64
    };
    floor + i64::from(up) + noise
}

numeric_kernel!(DiscreteLaplace, |m, xs, out, rng| laplace_kernel(
    m, xs, out, rng
));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::replay::Replay;
    use crate::{NumericMechanism, Range};

    fn one(m: &DiscreteLaplace, x: f64, bytes: Vec<u8>) -> i64 {
        let mut out = [GridPoint {
            branch: 0,
            index: 0,
        }];
        laplace_kernel(m, &[x][..], &mut out, &mut Replay::of_bytes(bytes)).unwrap();
        out[0].index
    }

    /// The little-endian bytes of one fast-path word followed by fresh words.
    fn stream(word: u32, fresh: &[u64]) -> Vec<u8> {
        let mut b = word.to_le_bytes().to_vec();
        fresh.iter().for_each(|w| b.extend(w.to_le_bytes()));
        b
    }

    #[test]
    fn the_fast_path_counts_thresholds_like_the_scalar_search() {
        let m = DiscreteLaplace::with_steps(1.0, Range::SYMMETRIC_UNIT, 64).unwrap();
        // x = -1 sits on grid point 0 with no rounding; sign bit 0 is positive.
        for p in (0..1u32 << 24).step_by(4099) {
            let u = u64::from(p) << 40;
            let expected = m.cdf().partition_point(|&c| c <= u) as i64;
            let fresh = [u64::MAX; 8];
            let got = one(&m, -1.0, stream(p << 8, &fresh));
            if (expected as usize) < m.cdf().len()
                && m.cdf()[expected as usize] >> 40 != u64::from(p)
            {
                assert_eq!(got, expected, "prefix {p:#x}");
            }
        }
    }

    #[test]
    fn certain_lookups_are_exact_counts() {
        // Tables of 28 entries, 7168 on the default grid, 8192 (the cap, with buckets
        // holding several thresholds near its end), and 1 entry.
        for (eps, steps) in [(1.0, 4), (1.0, 1024), (0.5, 4096), (20.0, 1)] {
            let m = DiscreteLaplace::with_steps(eps, Range::SYMMETRIC_UNIT, steps).unwrap();
            let prefixes: Vec<u32> = m.cdf().iter().map(|&c| (c >> 40) as u32).collect();
            let (table, len) = (m.batch_table(), m.cdf_len());
            let (mut open, mut mixed, mut checked) = (0u32, 0u32, 0u32);
            for p in (0..1u32 << 24).step_by(5) {
                checked += 1;
                let (k, certain) = match table.lookup(p, len) {
                    (k, true) => (k, true),
                    _ => {
                        mixed += 1;
                        table.window(p, len)
                    }
                };
                if certain {
                    assert_eq!(k, prefixes.partition_point(|&t| t < p), "prefix {p:#x}");
                    assert!(prefixes.binary_search(&p).is_err());
                } else {
                    open += 1;
                }
            }
            // At most one bucket of 2^-16 per threshold is mixed, besides the
            // numbers past the table.
            let past_share = 1.0 - (m.cdf()[len - 1] as f64 / 2f64.powi(64));
            let mixed_share = f64::from(mixed) / f64::from(checked) - past_share;
            assert!(
                mixed_share <= len as f64 / 65_536.0 + 1e-3,
                "eps={eps} steps={steps}: {mixed_share} of lookups in mixed buckets"
            );
            // Only past-the-table numbers and the few mixed buckets are left to
            // the windowed and slow paths.
            let past = 1.0 - (m.cdf()[m.cdf_len() - 1] as f64 / 2f64.powi(64));
            let slow = f64::from(open) / f64::from(checked) - past;
            assert!(
                slow < 0.05,
                "eps={eps} steps={steps}: {slow} of lookups overflow"
            );
        }
    }

    #[test]
    fn magnitudes_count_thresholds_like_the_scalar_search() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(6);
        for (eps, steps) in [(1.0, 1024), (1.0, 4), (20.0, 1)] {
            let m = DiscreteLaplace::with_steps(eps, Range::SYMMETRIC_UNIT, steps).unwrap();
            let cdf = m.cdf();
            // Random numbers, and numbers at and next to every threshold.
            let near = cdf.iter().flat_map(|&c| [c - 1, c, c.saturating_add(1)]);
            let random = (0..20_000).map(|_| rng.next_u64());
            let mut replay = Replay::of_words(&[0]);
            let mut src = RandomBuffer::new(&mut replay, 0);
            for u in near.chain(random) {
                let expected = cdf.partition_point(|&c| c <= u);
                if expected < cdf.len() {
                    let got = m.batch_table().magnitude(cdf, u, &mut src);
                    assert_eq!(got, expected as u64, "u = {u:#x}");
                }
            }
        }
    }

    #[test]
    fn a_tied_prefix_is_completed_with_fresh_bits() {
        let m = DiscreteLaplace::with_steps(1.0, Range::SYMMETRIC_UNIT, 64).unwrap();
        let k = 5;
        let c = m.cdf()[k];
        let p = (c >> 40) as u32;
        // Completing the number just below cdf[k] gives k, at cdf[k] gives k + 1.
        let below = (c & ((1 << 40) - 1)) - 1;
        let at = c & ((1 << 40) - 1);
        assert_eq!(one(&m, -1.0, stream(p << 8, &[below << 24])), k as i64);
        assert_eq!(one(&m, -1.0, stream(p << 8, &[at << 24])), k as i64 + 1);
    }

    #[test]
    fn past_the_table_a_fresh_magnitude_is_added() {
        let m = DiscreteLaplace::with_steps(0.004, Range::SYMMETRIC_UNIT, 4).unwrap();
        let len = m.cdf().len() as i64;
        // The top prefix is past every threshold; then the fresh 40 bits, then a fresh
        // magnitude draw of 0 (a uniform word of 0 is below every threshold).
        assert_eq!(one(&m, -1.0, stream(!0xff, &[u64::MAX, 0])), len);
        // Negative sign bit set: the same magnitude, negated.
        assert_eq!(one(&m, -1.0, stream(!0x7f, &[u64::MAX, 0])), -len);
    }

    #[test]
    fn negative_zero_is_redrawn_and_rounding_ties_continue() {
        let m = DiscreteLaplace::with_steps(1.0, Range::SYMMETRIC_UNIT, 64).unwrap();
        // Prefix 0 (magnitude 0), sign negative: the scalar sampler draws magnitude
        // and sign again from the fresh words: magnitude word u64::MAX - 1 ...
        let magnitude_word = m.cdf()[2];
        let expected = m.cdf().partition_point(|&c| c <= magnitude_word) as i64;
        // ... and a u32 sign word with bit 0 clear (positive).
        let got = one(&m, -1.0, stream(0x80, &[magnitude_word, 0]));
        assert_eq!(got, expected);
        // Between grid points 32 and 33 a rounding prefix equal to the threshold's
        // leaves the trial open, and the next word decides it against the rest.
        let x = 2.0 * (32.3 / 64.0) - 1.0;
        let (floor, frac) = m.grid_position(x).unwrap();
        assert_eq!(floor, 32);
        let t = Threshold::floor(frac);
        let tie = t.prefix(ROUND_BITS) as u32;
        assert_eq!(
            one(&m, x, stream(tie, &[t.after_prefix(ROUND_BITS).raw() - 1])),
            33
        );
        assert_eq!(one(&m, x, stream(tie, &[u64::MAX])), 32);
        assert!(m.is_valid_output(GridPoint {
            branch: 0,
            index: 33
        }));
    }
}
