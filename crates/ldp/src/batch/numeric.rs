//! Duchi, 1BitMean, Piecewise and Hybrid in batches, on the same fixed output
//! grids as their scalar `perturb`.
//!
//! Per sample the float work is only turning the input into threshold
//! prefixes: the same float expressions as the scalar path, read through
//! `PrefixKey::rounding` and `BinaryCore::prefix_at`, which either give the
//! exact prefix or say they cannot (then the second pass recomputes the
//! scalar threshold). Every random decision is an integer comparison. Bernoulli trials compare an 8-bit uniform prefix with the
//! threshold's prefix and, on a tie (probability 1/256), continue with fresh
//! bits against [`Threshold::after_prefix`]; the Piecewise cell is Lemire's
//! method on 16 bits, retried with fresh bits on rejection. The main loops
//! only record those cases, and a second pass finishes them with the scalar
//! samplers, so each output has exactly the scalar law.

use rand::Rng;

use super::buffer::RandomBuffer;
use super::{Inputs, for_flagged, map_finite};
use crate::numeric::BinaryCore;
use crate::sampling::{NarrowUniform, PrefixKey, Threshold};
use crate::{Duchi, GridPoint, Hybrid, LOneBitMean, LdpError, OneBitMean, Piecewise};

/// Samples per pass.
const CHUNK: usize = 512;

/// Bits of each Bernoulli prefix.
const BYTE: u32 = 8;

/// One Bernoulli trial from an 8-bit prefix: the outcome, and whether fresh bits must finish it.
#[inline(always)]
fn trial(r: u64, t: Threshold) -> (bool, bool) {
    t.prefix_trial(r, BYTE)
}

/// The outcome of a trial whose 8-bit prefix `r` may have left it open.
fn finish_trial<R: Rng + ?Sized>(r: u64, t: Threshold, src: &mut RandomBuffer<'_, R>) -> bool {
    let (below, open) = trial(r, t);
    if open {
        t.after_prefix(BYTE).sample(src)
    } else {
        below
    }
}

/// Duchi and 1BitMean: one bit whose threshold depends on the input, from one random byte.
///
/// One loop estimates each input's threshold prefix in `f64`
/// ([`BinaryCore::prefix_at`], the same float steps as the scalar path's
/// threshold) and compares it with a random byte; a second pass recomputes the
/// exact threshold for the rare inputs whose estimate was uncertain or whose
/// byte tied, and finishes them from the same byte and fresh bits.
#[inline(always)]
fn binary_kernel<R: Rng + ?Sized>(
    core: &BinaryCore,
    xs: impl Inputs<f64>,
    out: &mut [GridPoint],
    rng: &mut R,
) -> Result<(), LdpError> {
    let mut src = RandomBuffer::new(rng, out.len() + 64);
    let range = core.range();
    let mut prefixes = [0u32; CHUNK];
    let mut certain = [false; CHUNK];
    let mut rs = [0u8; CHUNK];
    let mut open = [0u8; CHUNK];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let (n, first) = (chunk.len(), c * CHUNK);
        let (prefixes, certain, rs, open) = (
            &mut prefixes[..n],
            &mut certain[..n],
            &mut rs[..n],
            &mut open[..n],
        );
        map_finite(&xs, first, prefixes, certain, |x| {
            core.prefix_at(range.to_unit_finite(x), BYTE)
        })?;
        src.ensure(n);
        rs.copy_from_slice(&src.bytes()[..n]);
        src.consume(n);
        for (((flag, &p), &c), &r) in open
            .iter_mut()
            .zip(prefixes.iter())
            .zip(certain.iter())
            .zip(rs.iter())
        {
            *flag = u8::from(u32::from(r) == p || !c);
        }
        for ((o, &p), &r) in chunk.iter_mut().zip(prefixes.iter()).zip(rs.iter()) {
            *o = GridPoint {
                branch: 0,
                index: i64::from(u32::from(r) < p),
            };
        }
        for_flagged(open, |k| {
            let t = core.threshold_at(range.to_unit_finite(xs.at(first + k)));
            chunk[k].index = i64::from(finish_trial(u64::from(rs[k]), t, &mut src));
        });
    }
    Ok(())
}

numeric_kernel!(Duchi, |m, xs, out, rng| binary_kernel(
    m.core(),
    xs,
    out,
    rng
));
numeric_kernel!(OneBitMean, |m, xs, out, rng| binary_kernel(
    m.core(),
    xs,
    out,
    rng
));

/// Two-layer 1BitMean: a fresh device's grid point by randomized rounding
/// (one random byte against the fraction's prefix key, as the Piecewise
/// window's), its permanent bit through the 1BitMean kernel at that point, and
/// the instantaneous flip of 64 bits per word through the bit slicer. The
/// scalar `perturb` makes the same three draws against the same thresholds.
#[inline(always)]
pub(crate) fn lonebit_kernel<R: Rng + ?Sized>(
    m: &LOneBitMean,
    xs: impl Inputs<f64>,
    out: &mut [GridPoint],
    rng: &mut R,
) -> Result<(), LdpError> {
    // The flip: a mask whose every bit is 1 with the complement of the keep
    // probability (no lane selected, so every lane has the "other" threshold).
    let flip = m.keep_threshold().complement();
    let slicer = super::bits::BitSlicer::new(flip, flip);
    let core = m.unit_core();
    let range = m.clip_range();
    let steps = m.steps();
    // The permanent bit's exact threshold at each of the few grid points, as
    // prefix keys: no float estimate (and no uncertain one) per input.
    let thresholds: Vec<Threshold> = (0..=steps)
        .map(|k| core.threshold_at(f64::from(k) / f64::from(steps)))
        .collect();
    let bit_keys: Vec<PrefixKey> = thresholds.iter().map(|&t| PrefixKey::of(t, BYTE)).collect();
    let mut src = RandomBuffer::new(rng, 3 * out.len() + 64);
    let mut floors = [0u32; CHUNK];
    let mut keys = [PrefixKey::default(); CHUNK];
    let mut points = [0u32; CHUNK];
    let mut rs = [0u8; 2 * CHUNK];
    let mut open = [0u8; CHUNK];
    let mut mask = [0u64; CHUNK / 64];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let (n, first) = (chunk.len(), c * CHUNK);
        let (floors, keys, points, open) = (
            &mut floors[..n],
            &mut keys[..n],
            &mut points[..n],
            &mut open[..n],
        );
        map_finite(&xs, first, floors, keys, |x| {
            PrefixKey::rounding(m.grid_position(range.to_unit_finite(x)), BYTE)
        })?;
        // Two bytes per input: the rounding's, then the permanent bit's.
        src.ensure(2 * n);
        let rs = &mut rs[..2 * n];
        rs.copy_from_slice(&src.bytes()[..2 * n]);
        src.consume(2 * n);
        let (round_bytes, bit_bytes) = rs.split_at(n);
        for ((((p, o), &f), &key), &r) in points
            .iter_mut()
            .zip(open.iter_mut())
            .zip(floors.iter())
            .zip(keys.iter())
            .zip(round_bytes.iter())
        {
            let (up, tie) = key.trial(u32::from(r));
            *o = u8::from(tie);
            *p = (f + u32::from(up)).min(steps);
        }
        // The rare tied roundings finish with fresh bits before any bit depends on them.
        for_flagged(open, |k| {
            let x = xs.at(first + k);
            let (floor, frac) =
                crate::sampling::floor_fraction(m.grid_position(range.to_unit_finite(x)));
            let up = finish_trial(u64::from(round_bytes[k]), Threshold::floor(frac), &mut src);
            points[k] = (floor + u32::from(up)).min(steps);
        });
        // The permanent bit at the grid point, as the 1BitMean kernel draws it.
        for (((o, flag), &p), &r) in chunk
            .iter_mut()
            .zip(open.iter_mut())
            .zip(points.iter())
            .zip(bit_bytes.iter())
        {
            let (bit, tie) = bit_keys[p as usize].trial(u32::from(r));
            *flag = u8::from(tie);
            *o = GridPoint {
                branch: 0,
                index: i64::from(bit),
            };
        }
        for_flagged(open, |k| {
            let t = thresholds[points[k] as usize];
            chunk[k].index = i64::from(finish_trial(u64::from(bit_bytes[k]), t, &mut src));
        });
        // The instantaneous flip.
        let words = &mut mask[..n.div_ceil(64)];
        words.fill(0);
        let per = words.len();
        super::unary::flip_rows_from(&slicer, words, per, n as u32, &mut src);
        for (&w, points) in words.iter().zip(chunk.chunks_mut(64)) {
            for (k, o) in points.iter_mut().enumerate() {
                o.index ^= ((w >> k) & 1) as i64;
            }
        }
    }
    Ok(())
}

numeric_kernel!(LOneBitMean, |m, xs, out, rng| lonebit_kernel(
    m, xs, out, rng
));

/// Flags of a Piecewise sample the fast pass could not finish.
const ROUND_TIE: u8 = 1;
const WINDOW_TIE: u8 = 2;
const REJECTED: u8 = 4;

/// The Piecewise Mechanism's randomness, read from the mechanism: one `u32`
/// per sample, 8 bits for the window's randomized rounding, 8 for the
/// inside/outside trial and 16 for the cell.
#[derive(Debug, Clone, Copy)]
struct PiecewiseParts {
    in_window: Threshold,
    in_window_key: PrefixKey,
    window: u32,
    inside: NarrowUniform,
    outside: NarrowUniform,
}

/// Where an input puts the window: the lower start, and the 8-bit prefix key
/// of its randomized rounding: two plain `u32`s per input, so the loop that
/// computes them vectorizes.
#[inline(always)]
fn start_of(pm: &Piecewise, x: f64) -> (u32, PrefixKey) {
    PrefixKey::rounding(pm.window_position_finite(x), BYTE)
}

impl PiecewiseParts {
    fn new(pm: &Piecewise) -> Result<Self, LdpError> {
        // Cells are at most 2^16, so both ranges fit 16-bit draws.
        let narrow = |u: crate::sampling::UniformBelow| {
            u.narrow(16).ok_or(LdpError::Unrealizable(
                "piecewise grids above 2^16 cells have no batch kernel",
            ))
        };
        Ok(PiecewiseParts {
            in_window: pm.in_window_threshold(),
            in_window_key: PrefixKey::of(pm.in_window_threshold(), BYTE),
            window: pm.window(),
            inside: narrow(pm.inside_sampler())?,
            outside: narrow(pm.outside_sampler())?,
        })
    }

    /// The cell from one random word and the input's window start and
    /// rounding key ([`start_of`]), and what is left open.
    #[inline(always)]
    fn fast(self, w: u32, floor: u32, round: PrefixKey) -> (u32, u8) {
        let (up, round_open) = round.trial(w >> 24);
        let (inside, window_open) = self.in_window_key.trial((w >> 16) & 0xff);
        let start = floor + u32::from(up);
        let (i, i_ok) = self.inside.map(w & 0xffff);
        let (o, o_ok) = self.outside.map(w & 0xffff);
        // Outside cells skip over the window.
        let outside_cell = if o < start { o } else { o + self.window };
        let cell = if inside { start + i } else { outside_cell };
        let rejected = if inside { !i_ok } else { !o_ok };
        let flags = u8::from(round_open) * ROUND_TIE
            + u8::from(window_open) * WINDOW_TIE
            + u8::from(rejected) * REJECTED;
        (cell, flags)
    }

    /// Recomputes a flagged sample for input `x`, finishing open trials and
    /// rejected draws with fresh bits.
    #[cold]
    fn finish<R: Rng + ?Sized>(
        self,
        pm: &Piecewise,
        w: u32,
        x: f64,
        src: &mut RandomBuffer<'_, R>,
    ) -> u32 {
        let (floor, frac) = pm.window_start_finite(x);
        let round = Threshold::floor(frac);
        let start = floor + u32::from(finish_trial(u64::from(w >> 24), round, src));
        let inside = finish_trial(u64::from((w >> 16) & 0xff), self.in_window, src);
        if inside {
            let (i, ok) = self.inside.map(w & 0xffff);
            start + if ok { i } else { self.inside.sample(src) }
        } else {
            let (o, ok) = self.outside.map(w & 0xffff);
            let o = if ok { o } else { self.outside.sample(src) };
            if o < start { o } else { o + self.window }
        }
    }
}

#[inline(always)]
fn piecewise_kernel<R: Rng + ?Sized>(
    pm: &Piecewise,
    xs: impl Inputs<f64>,
    out: &mut [GridPoint],
    rng: &mut R,
) -> Result<(), LdpError> {
    let parts = PiecewiseParts::new(pm)?;
    let mut src = RandomBuffer::new(rng, 4 * out.len());
    let mut words = [0u32; CHUNK];
    let mut floors = [0u32; CHUNK];
    let mut keys = [PrefixKey::default(); CHUNK];
    let mut cells = [0u32; CHUNK];
    let mut flags = [0u8; CHUNK];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let (n, first) = (chunk.len(), c * CHUNK);
        let (words, floors, keys, cells, flags) = (
            &mut words[..n],
            &mut floors[..n],
            &mut keys[..n],
            &mut cells[..n],
            &mut flags[..n],
        );
        map_finite(&xs, first, floors, keys, |x| start_of(pm, x))?;
        src.take_u32s(words);
        for ((((cell, flag), &w), &floor), &key) in cells
            .iter_mut()
            .zip(flags.iter_mut())
            .zip(words.iter())
            .zip(floors.iter())
            .zip(keys.iter())
        {
            (*cell, *flag) = parts.fast(w, floor, key);
        }
        for (o, &cell) in chunk.iter_mut().zip(cells.iter()) {
            *o = GridPoint {
                branch: 0,
                index: i64::from(cell),
            };
        }
        for_flagged(flags, |k| {
            chunk[k].index = i64::from(parts.finish(pm, words[k], xs.at(first + k), &mut src));
        });
    }
    Ok(())
}

numeric_kernel!(Piecewise, |m, xs, out, rng| piecewise_kernel(
    m, xs, out, rng
));

/// Hybrid: per sample, one `u32` for the Piecewise branch (as in the
/// Piecewise kernel) and one for the branch coin (its top byte) and the Duchi
/// bit (the next byte). Both branches are computed and the coin selects one,
/// so the loop does not branch on it; the unused branch's bits are discarded,
/// never reused.
#[inline(always)]
fn hybrid_kernel<R: Rng + ?Sized>(
    hm: &Hybrid,
    xs: impl Inputs<f64>,
    out: &mut [GridPoint],
    rng: &mut R,
) -> Result<(), LdpError> {
    let pm = hm.piecewise();
    let parts = PiecewiseParts::new(pm)?;
    let duchi = hm.duchi().core();
    let range = duchi.range();
    let coin = hm.use_piecewise_threshold();
    let coin_key = PrefixKey::of(coin, BYTE);
    let mut src = RandomBuffer::new(rng, 8 * out.len());
    let mut words = [0u32; CHUNK];
    let mut coins = [0u32; CHUNK];
    let mut floors = [0u32; CHUNK];
    let mut keys = [PrefixKey::default(); CHUNK];
    let mut prefixes = [0u32; CHUNK];
    let mut certain = [false; CHUNK];
    let mut cells = [0u32; CHUNK];
    let mut branches = [0u8; CHUNK];
    let mut flags = [0u8; CHUNK];
    for (c, chunk) in out.chunks_mut(CHUNK).enumerate() {
        let (n, first) = (chunk.len(), c * CHUNK);
        let (words, coins, floors, keys, prefixes, certain) = (
            &mut words[..n],
            &mut coins[..n],
            &mut floors[..n],
            &mut keys[..n],
            &mut prefixes[..n],
            &mut certain[..n],
        );
        let (cells, branches, flags) = (&mut cells[..n], &mut branches[..n], &mut flags[..n]);
        map_finite(&xs, first, floors, keys, |x| start_of(pm, x))?;
        map_finite(&xs, first, prefixes, certain, |x| {
            duchi.prefix_at(range.to_unit_finite(x), BYTE)
        })?;
        src.take_u32s(words);
        src.take_u32s(coins);
        for k in 0..n {
            let (w, v) = (words[k], coins[k]);
            let (use_pm, coin_open) = coin_key.trial(v >> 24);
            let r = (v >> 16) & 0xff;
            let (one, bit_open) = (r < prefixes[k], r == prefixes[k] || !certain[k]);
            let (pm_cell, pm_flags) = parts.fast(w, floors[k], keys[k]);
            cells[k] = if use_pm { pm_cell } else { u32::from(one) };
            branches[k] = u8::from(!use_pm);
            flags[k] = u8::from(coin_open || if use_pm { pm_flags != 0 } else { bit_open });
        }
        for ((o, &cell), &branch) in chunk.iter_mut().zip(cells.iter()).zip(branches.iter()) {
            *o = GridPoint {
                branch,
                index: i64::from(cell),
            };
        }
        for_flagged(flags, |k| {
            let v = u64::from(coins[k]);
            chunk[k] = if finish_trial(v >> 24, coin, &mut src) {
                GridPoint {
                    branch: 0,
                    index: i64::from(parts.finish(pm, words[k], xs.at(first + k), &mut src)),
                }
            } else {
                let t = duchi.threshold_at(range.to_unit_finite(xs.at(first + k)));
                GridPoint {
                    branch: 1,
                    index: i64::from(finish_trial((v >> 16) & 0xff, t, &mut src)),
                }
            };
        });
    }
    Ok(())
}

numeric_kernel!(Hybrid, |m, xs, out, rng| hybrid_kernel(m, xs, out, rng));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Range;
    use crate::batch::replay::Replay;

    #[test]
    fn threshold_at_rounds_like_f64_round() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(4);
        for eps in [0.01, 1.0, 20.0] {
            let core = Duchi::new(eps, Range::SYMMETRIC_UNIT)
                .unwrap()
                .core()
                .clone();
            let (low, high) = (core.threshold_at(0.0).raw(), core.threshold_at(1.0).raw());
            let span = high - low;
            let reference = |u: f64| {
                let step = (u * span as f64).round().clamp(0.0, span as f64) as u64;
                low + step.min(span)
            };
            let halves = (0..64).map(|k| (k as f64 + 0.5) / span as f64);
            let specials = [0.0, 1.0, 0.5, -0.0, 1e-300, f64::NAN, 2.0, -1.0];
            let random = (0..10_000).map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64);
            for u in specials.into_iter().chain(halves).chain(random) {
                assert_eq!(
                    core.threshold_at(u).raw(),
                    reference(u),
                    "eps {eps}, u = {u:e}"
                );
            }
        }
    }

    #[test]
    fn a_tied_duchi_byte_continues_against_the_rest() {
        let m = Duchi::new(1.0, Range::SYMMETRIC_UNIT).unwrap();
        let t = m.core().threshold_at(0.7);
        let x = 2.0 * 0.7 - 1.0;
        let run = |rest: u64| {
            let mut bytes = vec![t.prefix(BYTE) as u8];
            bytes.extend(rest.to_le_bytes());
            let mut out = [GridPoint {
                branch: 0,
                index: 9,
            }];
            binary_kernel(m.core(), &[x][..], &mut out, &mut Replay::of_bytes(bytes)).unwrap();
            out[0].index
        };
        assert_eq!(run(t.after_prefix(BYTE).raw() - 1), 1);
        assert_eq!(run(t.after_prefix(BYTE).raw()), 0);
    }

    #[test]
    fn piecewise_ties_and_rejections_finish_with_fresh_bits() {
        let pm = Piecewise::with_cells(1.0, Range::SYMMETRIC_UNIT, 64).unwrap();
        let parts = PiecewiseParts::new(&pm).unwrap();
        // Halfway between window starts 10 and 11.
        let x = 2.0 * (10.5 / f64::from(pm.cells() - pm.window())) - 1.0;
        let (floor, frac) = pm.window_start(x).unwrap();
        assert_eq!(floor, 10);
        let round = Threshold::floor(frac);
        let run = |word: u32, fresh: &[u64]| {
            let mut bytes = word.to_le_bytes().to_vec();
            fresh.iter().for_each(|w| bytes.extend(w.to_le_bytes()));
            let mut out = [GridPoint {
                branch: 0,
                index: -1,
            }];
            piecewise_kernel(&pm, &[x][..], &mut out, &mut Replay::of_bytes(bytes)).unwrap();
            out[0].index as u32
        };
        // Round up (prefix 0 is below a nonzero threshold prefix), inside the window
        // (prefix 0), and a 16-bit draw that Lemire's method accepts.
        assert!(round.prefix(BYTE) > 0 && parts.in_window.prefix(BYTE) > 0);
        let draw = (0x8000..0x9000)
            .find(|&w| parts.inside.map(w).1 && parts.outside.map(w).1)
            .unwrap();
        let cell = parts.inside.map(draw).0;
        assert_eq!(run(draw, &[]), floor + 1 + cell);
        // A tied rounding byte continues: a rest of u64::MAX rounds down.
        let tie = (round.prefix(BYTE) as u32) << 24;
        assert_eq!(run(tie | draw, &[u64::MAX]), floor + cell);
        // Outside the window (byte 0xff) with a 16-bit draw of 0, which is in the
        // rejection zone when 2^16 is not a multiple of the range: redrawn from the
        // next word's top 16 bits.
        let outside = 0x00ff_0000;
        assert!(
            !parts.outside.map(0).1,
            "0 is rejected for {} cells",
            parts.outside.n()
        );
        let cell = parts.outside.map(draw).0;
        let start = floor + 1;
        let expected = if cell < start {
            cell
        } else {
            cell + parts.window
        };
        assert_eq!(run(outside, &[u64::from(draw) << 48]), expected);
    }

    #[test]
    fn a_tied_hybrid_coin_picks_the_branch_with_fresh_bits() {
        let hm = Hybrid::new(2.0, Range::SYMMETRIC_UNIT).unwrap();
        let coin = hm.use_piecewise_threshold();
        let run = |rest: u64| {
            let mut words = vec![coin.prefix(BYTE) << 56];
            words.push(rest);
            let mut out = [GridPoint {
                branch: 9,
                index: -1,
            }];
            hybrid_kernel(&hm, &[0.2][..], &mut out, &mut Replay::of_words(&words)).unwrap();
            out[0]
        };
        assert_eq!(run(0).branch, 0);
        assert_eq!(run(u64::MAX).branch, 1);
    }
}
