//! A fixed-length bit vector packed into `u64` words: the output of unary encodings.

use std::fmt;

/// A bit vector of fixed length, 64 bits per `u64` word, least significant bit first.
///
/// Bits past `len` in the last word are always zero, so equality and
/// [`PackedBits::count_ones`] need no masking.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PackedBits {
    words: Vec<u64>,
    len: u32,
}

impl PackedBits {
    /// All-zero bits of length `len`.
    pub fn zeros(len: u32) -> Self {
        PackedBits {
            words: vec![0; Self::words_for(len)],
            len,
        }
    }

    /// Builds from words, or `None` if the word count does not match `len` or a
    /// bit past `len` is set (such a vector was not produced by an encoder).
    pub fn from_words(words: Vec<u64>, len: u32) -> Option<Self> {
        if words.len() != Self::words_for(len) {
            return None;
        }
        let tail = len % 64;
        if tail != 0
            && let Some(last) = words.last()
            && last >> tail != 0
        {
            return None;
        }
        Some(PackedBits { words, len })
    }

    /// How many words hold `len` bits.
    pub fn words_for(len: u32) -> usize {
        (len as usize).div_ceil(64)
    }

    /// Number of bits.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the vector has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed words.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Mutable packed words, for encoders that fill whole words at once.
    ///
    /// Callers must leave the bits past `len` zero: `count_ones` and equality
    /// read whole words.
    pub fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    /// Bit `i`; false past the end.
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Sets bit `i` to `bit`. Panics past the end, an invariant of the caller.
    pub fn set(&mut self, i: u32, bit: bool) {
        assert!(
            i < self.len,
            "bit {i} past the end of a {}-bit vector",
            self.len
        );
        let w = &mut self.words[(i / 64) as usize];
        let mask = 1u64 << (i % 64);
        if bit {
            *w |= mask;
        } else {
            *w &= !mask;
        }
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// The indices of set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(wi as u32 * 64 + bit)
            })
        })
    }
}

impl fmt::Debug for PackedBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PackedBits({} of {} set: {self})",
            self.count_ones(),
            self.len
        )
    }
}

/// Comma-separated indices of the set bits, e.g. `3,17,40`.
impl fmt::Display for PackedBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, i) in self.ones().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_ones_and_display() {
        let mut b = PackedBits::zeros(130);
        for i in [0, 63, 64, 129] {
            b.set(i, true);
        }
        assert_eq!(b.count_ones(), 4);
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![0, 63, 64, 129]);
        assert_eq!(b.to_string(), "0,63,64,129");
        assert!(b.get(129) && !b.get(128) && !b.get(500));
        b.set(63, false);
        assert_eq!(b.to_string(), "0,64,129");
    }

    #[test]
    fn from_words_rejects_bits_past_the_end() {
        assert!(PackedBits::from_words(vec![1 << 5], 5).is_none());
        assert!(PackedBits::from_words(vec![1 << 4], 5).is_some());
        assert!(PackedBits::from_words(vec![0, 0], 5).is_none());
        assert!(PackedBits::from_words(vec![u64::MAX], 64).is_some());
    }
}
