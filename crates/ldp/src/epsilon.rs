//! Validated privacy parameters: epsilon and frequency-oracle domain sizes.

use crate::LdpError;

/// The largest epsilon any mechanism accepts.
///
/// Beyond about 20 the mechanisms are practically non-private and the
/// probabilities they need (for example OUE's `1/(e^eps+1)`) approach the
/// resolution of the 2^-64 threshold grid.
pub const MAX_EPSILON: f64 = 20.0;

/// The largest domain a frequency oracle accepts (2^20 values).
///
/// Collectors keep one counter per domain value and unary encodings send one
/// bit per value, so larger domains should be bucketed or hashed first.
pub const MAX_DOMAIN: u32 = 1 << 20;

/// Checks that `epsilon` is a finite number in `(0, MAX_EPSILON]`.
pub fn check_epsilon(epsilon: f64) -> Result<f64, LdpError> {
    if epsilon.is_finite() && epsilon > 0.0 && epsilon <= MAX_EPSILON {
        Ok(epsilon)
    } else {
        Err(LdpError::Epsilon {
            value: epsilon,
            max: MAX_EPSILON,
        })
    }
}

/// Checks that a domain size is in `[2, MAX_DOMAIN]`.
pub fn check_domain(domain: u64) -> Result<u32, LdpError> {
    if (2..=u64::from(MAX_DOMAIN)).contains(&domain) {
        // Within MAX_DOMAIN, so it fits in u32.
        Ok(domain as u32)
    } else {
        Err(LdpError::Domain {
            value: domain,
            max: MAX_DOMAIN,
        })
    }
}

/// Rounds a privacy loss computed in floating point up, so that the epsilon a
/// mechanism states is never below the privacy loss its integer thresholds realize.
///
/// `ln` and the conversions before it are accurate to a few ulps; a relative
/// margin of 1e-12 covers them with room to spare.
pub fn round_up_loss(loss: f64) -> f64 {
    loss * (1.0 + 1e-12) + f64::MIN_POSITIVE
}
