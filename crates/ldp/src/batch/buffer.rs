//! A buffered random source: generator output fetched in large chunks, then read as plain words.

use std::convert::Infallible;

use rand::{Rng, TryRng};

/// Bytes held at once: big enough that a refill's per-call cost vanishes
/// against the ChaCha blocks it produces, small enough to stay in L1 cache.
pub(crate) const CAPACITY: usize = 4096;

/// The smallest refill once the caller's estimate of its needs is spent, so a
/// kernel that underestimated does not call the generator for every word.
const MIN_REFILL: usize = 256;

/// Generator output held in a byte array and handed out in chunks.
///
/// Kernels ask for a chunk ([`RandomBuffer::ensure`]), transform it as a plain
/// array, then mark it used ([`RandomBuffer::consume`]), so the transform
/// loops carry no per-word calls into the generator and can vectorize. Bytes
/// are never reused: every random bit drives at most one decision, which is
/// what keeps the batch kernels' trials independent.
///
/// It also implements [`rand::Rng`], so the rare fix-up paths of the kernels
/// reuse the scalar samplers of [`crate::sampling`] on the same stream.
pub(crate) struct RandomBuffer<'a, R: ?Sized> {
    rng: &'a mut R,
    bytes: [u8; CAPACITY],
    start: usize,
    end: usize,
    /// Bytes the caller still expects to need; refills fetch that much up to capacity.
    expected: usize,
    /// The furthest byte ever filled, so that dropping clears only what was used.
    high: usize,
}

impl<'a, R: Rng + ?Sized> RandomBuffer<'a, R> {
    /// A buffer over `rng`, for a caller that expects to use about `expected` bytes.
    ///
    /// Nothing is drawn until the first [`RandomBuffer::ensure`]; the estimate
    /// only sizes refills, so a small batch does not pay for a full buffer.
    pub(crate) fn new(rng: &'a mut R, expected: usize) -> Self {
        RandomBuffer {
            rng,
            bytes: [0; CAPACITY],
            start: 0,
            end: 0,
            expected,
            high: 0,
        }
    }

    /// Makes at least `n` unread bytes available (`n <= CAPACITY`).
    #[inline]
    pub(crate) fn ensure(&mut self, n: usize) {
        if self.end - self.start < n {
            self.refill(n);
        }
    }

    #[inline(never)]
    fn refill(&mut self, n: usize) {
        debug_assert!(
            n <= CAPACITY,
            "a kernel asked for more than the buffer holds"
        );
        let left = self.end - self.start;
        self.bytes.copy_within(self.start..self.end, 0);
        let want = n
            .max(self.expected.saturating_add(left))
            .clamp(MIN_REFILL, CAPACITY);
        self.rng.fill_bytes(&mut self.bytes[left..want]);
        self.expected = self.expected.saturating_sub(want - left);
        self.start = 0;
        self.end = want;
        self.high = self.high.max(want);
    }

    /// The unread bytes: at least as many as the last [`RandomBuffer::ensure`] asked for.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Marks `n` bytes read.
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start, "consumed more than was ensured");
        self.start += n;
    }

    /// Fills `out` with uniform `u64`s from the buffer (`out.len() <= CAPACITY / 8`).
    #[inline]
    pub(crate) fn take_u64s(&mut self, out: &mut [u64]) {
        let n = 8 * out.len();
        self.ensure(n);
        for (w, b) in out.iter_mut().zip(self.bytes().chunks_exact(8)) {
            *w = le_u64(b);
        }
        self.consume(n);
    }

    /// Fills `out` with uniform `u32`s from the buffer (`out.len() <= CAPACITY / 4`).
    #[inline]
    pub(crate) fn take_u32s(&mut self, out: &mut [u32]) {
        let n = 4 * out.len();
        self.ensure(n);
        for (w, b) in out.iter_mut().zip(self.bytes().chunks_exact(4)) {
            *w = le_u32(b);
        }
        self.consume(n);
    }

    /// One uniform `u64`.
    #[inline]
    pub(crate) fn word(&mut self) -> u64 {
        self.ensure(8);
        let w = le_u64(self.bytes());
        self.consume(8);
        w
    }
}

/// The first eight bytes of `b` as a little-endian `u64` (zero if there are fewer;
/// callers always pass eight, and the compiler turns this into one load).
#[inline(always)]
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    b.first_chunk::<8>().map_or(0, |a| u64::from_le_bytes(*a))
}

/// The first four bytes of `b` as a little-endian `u32` (zero if there are fewer).
#[inline(always)]
pub(crate) fn le_u32(b: &[u8]) -> u32 {
    b.first_chunk::<4>().map_or(0, |a| u32::from_le_bytes(*a))
}

impl<R: Rng + ?Sized> TryRng for RandomBuffer<'_, R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.ensure(4);
        let w = le_u32(self.bytes());
        self.consume(4);
        Ok(w)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.word())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(CAPACITY) {
            self.ensure(chunk.len());
            chunk.copy_from_slice(&self.bytes()[..chunk.len()]);
            self.consume(chunk.len());
        }
        Ok(())
    }
}

impl<R: ?Sized> Drop for RandomBuffer<'_, R> {
    /// Clears the buffer: unused bytes continue the noise stream, and bytes
    /// already used are the noise itself, so neither should outlive the call
    /// on the stack (the ChaCha generators clear their own buffers likewise).
    fn drop(&mut self) {
        self.bytes[..self.high].fill(0);
        // Keeps the compiler from removing the clearing as a dead store.
        std::hint::black_box(&self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;

    #[test]
    fn words_continue_the_generator_stream() {
        let mut direct = ChaCha8Rng::seed_from_u64(5);
        let mut expected = [0u8; 64];
        direct.fill_bytes(&mut expected);

        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut buf = RandomBuffer::new(&mut rng, 16);
        let mut words = [0u64; 3];
        buf.take_u64s(&mut words);
        assert_eq!(words[0], le_u64(&expected[0..8]));
        assert_eq!(words[2], le_u64(&expected[16..24]));
        let mut halves = [0u32; 2];
        buf.take_u32s(&mut halves);
        assert_eq!(halves[1], le_u32(&expected[28..32]));
        assert_eq!(buf.word(), le_u64(&expected[32..40]));
    }

    #[test]
    fn refills_keep_unread_bytes_and_never_repeat() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut buf = RandomBuffer::new(&mut rng, 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * CAPACITY / 8 {
            buf.ensure(8 * 17);
            assert!(seen.insert(buf.word()), "a word was handed out twice");
        }
    }
}
