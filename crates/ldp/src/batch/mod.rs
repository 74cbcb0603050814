//! Batch noising kernels: every mechanism perturbs many inputs (or one input
//! many times) into a caller-provided buffer, exactly in distribution like its
//! scalar `perturb`, with no allocation and few branches in the loop.
//!
//! The scalar `perturb` of each mechanism stays the reference implementation;
//! the kernels here realize the same integer thresholds (the same
//! [`Threshold`](crate::sampling::Threshold)s and
//! [`UniformBelow`](crate::sampling::UniformBelow)s, read from the mechanism) with
//! fewer random bits and branch-light loops:
//!
//! - **Randomness in chunks.** Generator output is fetched a few kilobytes at
//!   a time into a stack buffer (`buffer.rs`) and transformed as plain arrays,
//!   so the loops auto-vectorize without intrinsics: NEON is in aarch64's
//!   baseline, and on x86-64 `dispatch.rs` runs a second copy compiled with
//!   AVX2 when the CPU has it (the crate's one `unsafe` block).
//! - **Thresholds from floats, with proven bounds.** Each input's threshold
//!   prefix is computed with float arithmetic and bit casts only
//!   ([`PrefixKey`](crate::sampling::PrefixKey), `floor_fraction`,
//!   `BinaryCore::prefix_at`), because SSE2 has no packed conversion to
//!   64-bit integers; an estimate that might be off by one is flagged and
//!   recomputed exactly.
//! - **Bit-sliced Bernoulli trials** (`bits.rs`) for unary encodings and
//!   binary randomized response: 64 lanes per word, about 7.3 random bits per
//!   lane instead of 64.
//! - **Prefix comparisons.** A Bernoulli trial compares a short uniform prefix
//!   (7 to 32 bits) with the threshold's prefix
//!   ([`Threshold::prefix`](crate::sampling::Threshold::prefix)); only a tie
//!   draws more bits. Bounded uniforms use Lemire's method on 16 or 32 bits
//!   ([`NarrowUniform`](crate::sampling::NarrowUniform)). The main loop
//!   records the rare ties and rejections and a second pass resolves them, so
//!   the loop itself has no data-dependent branch.
//! - **Discrete Laplace** looks its magnitude up in the mechanism's own CDF
//!   table through a bucket table of its 24-bit prefixes (`laplace.rs`):
//!   integer comparisons only.
//!
//! Why each kernel is exact is stated where it is implemented; the tests in
//! `tests/batch_{frequency,numeric}.rs` check every kernel's output law against the realized
//! probabilities.
//!
//! On an error (an input out of the domain, a non-finite number, a buffer of
//! the wrong length) the call returns a typed [`LdpError`]. Lengths and
//! domain values are checked before anything is drawn; non-finite numbers are
//! found chunk by chunk while perturbing, so after that error the output
//! buffer's contents are unspecified.

// Declared before the kernel modules, which use it.
/// Implements [`NumericKernel`] for a mechanism by one call into its kernel
/// function (`|mechanism, inputs, out, rng| call`), which is inlined into each
/// dispatched copy.
macro_rules! numeric_kernel {
    ($mechanism:ty, |$m:ident, $xs:ident, $out:ident, $rng:ident| $call:expr) => {
        impl $crate::batch::NumericKernel for $mechanism {
            #[inline(always)]
            fn kernel<R: rand::CryptoRng + ?Sized>(
                &self,
                $xs: impl $crate::batch::Inputs<f64>,
                $out: &mut [$crate::GridPoint],
                $rng: &mut R,
            ) -> Result<(), $crate::LdpError> {
                let $m = self;
                $call
            }
        }
    };
}

mod any;
mod bits;
mod buffer;
mod choice;
mod dispatch;
mod laplace;
mod longitudinal;
mod numeric;
mod unary;

pub(crate) use laplace::{LaplaceTable, LazyTable};

use rand::CryptoRng;

use crate::{FrequencyOracle, GridPoint, LdpError, NumericMechanism};

/// Batch perturbation for a frequency oracle.
///
/// Reports land in a caller-provided slice of `Slot`s: one slot per report
/// for GRR, OLH and Hadamard response, and `PackedBits::words_for(d)` words per
/// report for unary encodings (each report's words are what
/// [`PackedBits::from_words`](crate::PackedBits::from_words) accepts).
pub trait FrequencyBatch: FrequencyOracle {
    /// One element of the output buffer.
    type Slot: Copy;

    /// How many slots one report fills.
    fn slots_per_report(&self) -> usize;

    /// Perturbs `values[i]` into the `i`-th report of `out`, which must hold
    /// exactly `values.len()` reports.
    ///
    /// Each report has the law of [`FrequencyOracle::perturb`] on the same
    /// value, independently of the others; the bits drawn differ from the
    /// scalar path's.
    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        values: &[u32],
        out: &mut [Self::Slot],
        rng: &mut R,
    ) -> Result<(), LdpError>;

    /// Fills every report of `out` (a whole number of reports) with an
    /// independent perturbation of `value`: simulations and audits.
    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        value: u32,
        out: &mut [Self::Slot],
        rng: &mut R,
    ) -> Result<(), LdpError>;
}

/// Batch perturbation for a numeric mechanism, into a caller-provided slice of grid points.
pub trait NumericBatch: NumericMechanism {
    /// Perturbs `xs[i]` into `out[i]`; both slices have the same length.
    ///
    /// Each output has the law of [`NumericMechanism::perturb`] on the same
    /// input, independently of the others.
    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        xs: &[f64],
        out: &mut [GridPoint],
        rng: &mut R,
    ) -> Result<(), LdpError>;

    /// Fills `out` with independent perturbations of `x`.
    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        x: f64,
        out: &mut [GridPoint],
        rng: &mut R,
    ) -> Result<(), LdpError>;
}

/// A numeric mechanism whose batch work is one kernel, generic over its
/// inputs; both [`NumericBatch`] entry points follow from it, so each mechanism
/// states its kernel once.
pub(crate) trait NumericKernel: NumericMechanism {
    /// Perturbs every input into the matching slot of `out` (same length).
    fn kernel<R: CryptoRng + ?Sized>(
        &self,
        xs: impl Inputs<f64>,
        out: &mut [GridPoint],
        rng: &mut R,
    ) -> Result<(), LdpError>;
}

impl<T: NumericKernel> NumericBatch for T {
    fn perturb_batch<R: CryptoRng + ?Sized>(
        &self,
        xs: &[f64],
        out: &mut [GridPoint],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        check_len("output buffer (grid points)", xs.len(), out.len())?;
        dispatch::vectorized(
            #[inline(always)]
            || self.kernel(xs, out, rng),
        )
    }

    fn perturb_repeated<R: CryptoRng + ?Sized>(
        &self,
        x: f64,
        out: &mut [GridPoint],
        rng: &mut R,
    ) -> Result<(), LdpError> {
        let count = out.len();
        dispatch::vectorized(
            #[inline(always)]
            || self.kernel(Repeat { value: x, count }, out, rng),
        )
    }
}

/// A batch's inputs: a slice, or one value repeated. Kernels are generic over
/// it, so both entry points share one monomorphized loop each.
pub(crate) trait Inputs<T: Copy> {
    /// How many inputs.
    fn count(&self) -> usize;
    /// Input `i` (`i < count()`).
    fn at(&self, i: usize) -> T;

    /// Sets `(a[k], b[k]) = f(x)` for the inputs `x` of the chunk starting at
    /// `first` (as long as `a` and `b`; within `count()`), and returns whether
    /// `ok` held for all of them.
    ///
    /// One pass without an early exit, over a subslice checked once, so it
    /// vectorizes; a repeated input is mapped once.
    fn map_chunk<A: Copy, B: Copy>(
        &self,
        first: usize,
        a: &mut [A],
        b: &mut [B],
        ok: impl Fn(T) -> bool,
        f: impl Fn(T) -> (A, B),
    ) -> bool;
}

impl<T: Copy> Inputs<T> for &[T] {
    #[inline(always)]
    fn count(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn at(&self, i: usize) -> T {
        self[i]
    }

    #[inline(always)]
    fn map_chunk<A: Copy, B: Copy>(
        &self,
        first: usize,
        a: &mut [A],
        b: &mut [B],
        ok: impl Fn(T) -> bool,
        f: impl Fn(T) -> (A, B),
    ) -> bool {
        let n = a.len().min(b.len());
        let mut all = true;
        for ((a, b), &x) in a.iter_mut().zip(b.iter_mut()).zip(&self[first..first + n]) {
            all &= ok(x);
            (*a, *b) = f(x);
        }
        all
    }
}

/// One input, `count` times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Repeat<T> {
    pub(crate) value: T,
    pub(crate) count: usize,
}

impl<T: Copy> Inputs<T> for Repeat<T> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.count
    }

    #[inline(always)]
    fn at(&self, _: usize) -> T {
        self.value
    }

    #[inline(always)]
    fn map_chunk<A: Copy, B: Copy>(
        &self,
        _: usize,
        a: &mut [A],
        b: &mut [B],
        ok: impl Fn(T) -> bool,
        f: impl Fn(T) -> (A, B),
    ) -> bool {
        let (x, y) = f(self.value);
        a.fill(x);
        b.fill(y);
        ok(self.value)
    }
}

/// Checks an output buffer's length.
pub(crate) fn check_len(
    what: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), LdpError> {
    if expected == actual {
        Ok(())
    } else {
        Err(LdpError::BufferLength {
            what,
            expected,
            actual,
        })
    }
}

/// Checks that every value is in `0..domain`.
///
/// The scan takes the maximum without an early exit, so it vectorizes; only a
/// failing batch searches for the value to name.
pub(crate) fn check_values(values: &impl Inputs<u32>, domain: u32) -> Result<(), LdpError> {
    let max = (0..values.count()).map(|i| values.at(i)).fold(0, u32::max);
    if max < domain {
        return Ok(());
    }
    let value = (0..values.count())
        .map(|i| values.at(i))
        .find(|&v| v >= domain)
        .unwrap_or(max);
    Err(LdpError::ValueOutOfDomain {
        value: u64::from(value),
        domain,
    })
}

/// Sets `(a[k], b[k]) = f(x)` for every input `x = xs[first + k]` of a chunk
/// (`a` and `b` have the chunk's length), then fails on the chunk's first
/// non-finite input, if any.
///
/// Numeric kernels compute each input's thresholds in this one pass. A
/// non-finite input only makes `f` produce unspecified numbers (float
/// arithmetic, conversions and shifts that cannot panic), which the error
/// keeps from being used.
#[inline(always)]
pub(crate) fn map_finite<A: Copy, B: Copy>(
    xs: &impl Inputs<f64>,
    first: usize,
    a: &mut [A],
    b: &mut [B],
    f: impl Fn(f64) -> (A, B),
) -> Result<(), LdpError> {
    if xs.map_chunk(first, a, b, f64::is_finite, f) {
        return Ok(());
    }
    match (first..first + a.len())
        .map(|i| xs.at(i))
        .find(|x| !x.is_finite())
    {
        Some(x) => Err(LdpError::NonFiniteInput(x)),
        None => Ok(()),
    }
}

/// Calls `f` with the index of every nonzero flag, in order, reading the flags
/// eight at a time: flagged samples are rare, so most words are zero and
/// skipped with one comparison.
#[inline(always)]
pub(crate) fn for_flagged(flags: &[u8], mut f: impl FnMut(usize)) {
    let words = flags.chunks_exact(8);
    let tail = words.remainder();
    for (w, word) in words.enumerate() {
        let mut set = buffer::le_u64(word);
        while set != 0 {
            let k = set.trailing_zeros() as usize / 8;
            f(8 * w + k);
            set &= !(0xff << (8 * k));
        }
    }
    let start = flags.len() - tail.len();
    for (k, &flag) in tail.iter().enumerate() {
        if flag != 0 {
            f(start + k);
        }
    }
}

/// How many whole reports of `per` slots fill `len` slots.
pub(crate) fn whole_reports(len: usize, per: usize) -> Result<usize, LdpError> {
    if per > 0 && len.is_multiple_of(per) {
        Ok(len / per)
    } else {
        Err(LdpError::BufferLength {
            what: "output buffer (a whole number of reports)",
            expected: len.div_ceil(per.max(1)) * per,
            actual: len,
        })
    }
}

/// A generator that replays fixed bytes, so unit tests can steer the kernels
/// into their rare paths (ties, rejections, restarts) and check each against
/// the scalar comparison it stands for.
#[cfg(test)]
pub(crate) mod replay {
    use std::convert::Infallible;

    use rand::rngs::ChaCha8Rng;
    use rand::{Rng, SeedableRng, TryRng};

    /// Replays `bytes`, then continues with a seeded generator (never a constant,
    /// which would keep a rejection sampler rejecting forever).
    pub(crate) struct Replay {
        bytes: Vec<u8>,
        at: usize,
        after: ChaCha8Rng,
    }

    impl Replay {
        /// A replay of the little-endian bytes of `words`.
        pub(crate) fn of_words(words: &[u64]) -> Self {
            Self::of_bytes(words.iter().flat_map(|w| w.to_le_bytes()).collect())
        }

        /// A replay of raw bytes.
        pub(crate) fn of_bytes(bytes: Vec<u8>) -> Self {
            Replay {
                bytes,
                at: 0,
                after: ChaCha8Rng::seed_from_u64(0),
            }
        }
    }

    impl TryRng for Replay {
        type Error = Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }

        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            for d in dst {
                *d = match self.bytes.get(self.at) {
                    Some(&b) => b,
                    None => self.after.next_u32() as u8,
                };
                self.at += 1;
            }
            Ok(())
        }
    }
}
