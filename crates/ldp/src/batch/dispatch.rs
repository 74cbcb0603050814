//! Runtime dispatch of the batch kernels to AVX2 code on x86-64 CPUs that have
//! it: the only `unsafe` in hush-ldp.
//!
//! The kernels are portable array code. Built for the x86-64 baseline, the
//! compiler may only use SSE2, two `f64` or four `u32` lanes per instruction;
//! compiled again with AVX2 enabled, the same source runs twice as wide. That
//! second copy is `with_avx2`, chosen at run time when the CPU supports AVX2,
//! so one binary serves every x86-64 machine (no `-C target-cpu`). Both copies
//! compute the same IEEE arithmetic and integer comparisons (Rust never fuses
//! a multiply and an add on its own), so they produce identical outputs from
//! the same random bytes; the `every_copy_of_a_kernel_*` unit tests check that.

/// Runs `kernel`, compiled for AVX2 when this CPU has it.
///
/// Callers pass an `#[inline(always)]` closure, and the kernel functions it
/// calls are `#[inline(always)]` too, so their loops are compiled inside each
/// copy; without that, the compiler would keep one shared SSE2 copy.
#[inline(always)]
pub(crate) fn vectorized<T>(kernel: impl FnOnce() -> T) -> T {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `with_avx2` is safe Rust; its only requirement is that the
            // CPU supports AVX2, which was detected just above.
            #[allow(unsafe_code)]
            return unsafe { with_avx2(kernel) };
        }
    }
    kernel()
}

/// Calls `kernel` in a function compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn with_avx2<T>(kernel: impl FnOnce() -> T) -> T {
    kernel()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use crate::batch::{NumericBatch, NumericKernel};
    use crate::{
        DiscreteLaplace, Duchi, GridPoint, Hybrid, NoiseRng, OneBitMean, Piecewise, Range,
    };

    /// The dispatched copy (AVX2 where the CPU has it) and the baseline copy
    /// turn the same random bytes into the same outputs, bit for bit.
    fn same_outputs<M: NumericBatch + NumericKernel>(m: &M) {
        let mut inputs = NoiseRng::seed_from_u64(1);
        let xs: Vec<f64> = (0..5000)
            .map(|_| (inputs.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
            .chain([-1.0, 1.0, 0.0, -7.5, 7.5])
            .collect();
        let zero = GridPoint {
            branch: 0,
            index: 0,
        };
        let (mut dispatched, mut baseline) = (vec![zero; xs.len()], vec![zero; xs.len()]);
        m.perturb_batch(&xs, &mut dispatched, &mut NoiseRng::seed_from_u64(2))
            .unwrap();
        m.kernel(&xs[..], &mut baseline, &mut NoiseRng::seed_from_u64(2))
            .unwrap();
        assert_eq!(dispatched, baseline);
    }

    #[test]
    fn every_copy_of_a_kernel_computes_the_same_outputs() {
        let r = Range::SYMMETRIC_UNIT;
        for eps in [0.1, 1.0, 8.0] {
            same_outputs(&DiscreteLaplace::new(eps, r).unwrap());
            same_outputs(&Duchi::new(eps, r).unwrap());
            same_outputs(&OneBitMean::new(eps, Range::new(0.0, 10.0).unwrap()).unwrap());
            same_outputs(&Piecewise::new(eps, r).unwrap());
            same_outputs(&Hybrid::new(eps, r).unwrap());
        }
    }
}
