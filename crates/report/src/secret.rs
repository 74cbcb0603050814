//! The device secret and what is derived from it: the generator of each permanent
//! response, the keyed tags that say a value was drawn, and the rounding offsets.
//!
//! RAPPOR's approach to memoization without a list of values: a permanent
//! response is a deterministic function of (secret, metric, coarse value), so
//! the same value always gets the same response and nothing on disk has to
//! record which values were seen or what their responses were. The derivation
//! is HMAC-SHA-256 keyed with the 32-byte secret (a pseudorandom function),
//! expanded by ChaCha20.

use hmac::{Hmac, KeyInit, Mac};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of a device secret.
pub const SECRET_BYTES: usize = 32;

/// Bytes of a drawn-value tag.
pub const TAG_BYTES: usize = 16;

/// The one durable secret of a device: it keys every permanent response.
///
/// Its `Debug` prints nothing of it, it is zeroed on drop, and it has no
/// serializer: the agent writes its bytes to one file of its own.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DeviceSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceSecret(redacted)")
    }
}

/// Where a permanent response lives: one metric, as the catalog defines it,
/// at one permanent epsilon. A catalog change that leaves a metric alone
/// leaves its context, and so its responses, alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermanentContext {
    /// The metric's measure name (the spending history is kept per measure).
    pub metric: &'static str,
    /// The metric's canonical definition (encoding, range, mechanism).
    pub definition: String,
    /// `epsilon_perm` in 10^-9 units, so that no float formatting enters the key.
    pub epsilon_perm_units: u64,
}

impl DeviceSecret {
    /// A secret from bytes the caller drew from the operating system's generator.
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        DeviceSecret(bytes)
    }

    /// The bytes, for the agent to store in its secret file.
    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    fn prf(&self, label: &[u8], context: &PermanentContext, value: Option<u32>) -> [u8; 32] {
        // A key of any length is valid for HMAC; 32 bytes cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(e) => panic!("HMAC accepts a 32-byte key: {e}"),
        };
        // Length-prefixed fields: no two contexts encode to the same bytes.
        for part in [
            label,
            context.metric.as_bytes(),
            context.definition.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.update(&context.epsilon_perm_units.to_le_bytes());
        if let Some(v) = value {
            mac.update(&[1]);
            mac.update(&v.to_le_bytes());
        } else {
            mac.update(&[0]);
        }
        mac.finalize().into_bytes().into()
    }

    /// The generator of the permanent response of `coarse` in `context`: the
    /// same value always gets the same generator, so the same response.
    pub fn permanent_rng(&self, context: &PermanentContext, coarse: u32) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(self.prf(b"hush/permanent/v1", context, Some(coarse)))
    }

    /// The tag that records that `coarse` was drawn in `context`, without saying
    /// which value it was to anyone who lacks the secret.
    pub fn tag(&self, context: &PermanentContext, coarse: u32) -> [u8; TAG_BYTES] {
        let full = self.prf(b"hush/tag/v1", context, Some(coarse));
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    /// The generator of a metric's stand-in report when it has no answer it
    /// may use (capped, after `forget`, new terms or a new catalog): a fake
    /// coarse value drawn from it, uniformly and independently of any
    /// measurement, and that value's permanent response. Fixed per context, so
    /// the stand-in looks like a device whose value never changes.
    pub fn filler_rng(&self, context: &PermanentContext) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(self.prf(b"hush/filler/v1", context, None))
    }

    /// Which of a measure's metrics this device reports it through: a
    /// uniform draw in `[0, 1)` fixed per measure and secret
    /// ([`crate::Catalog::device_metrics`]), so it depends on no measurement.
    pub fn encoding_draw(&self, measure: &'static str) -> f64 {
        let context = PermanentContext {
            metric: measure,
            definition: String::new(),
            epsilon_perm_units: 0,
        };
        unit(&self.prf(b"hush/encoding/v1", &context, None))
    }

    /// The device's alpha-point rounding offset for a metric, in `[0, 1)`:
    /// fixed per metric (so an unchanged count keeps its grid point) and
    /// uniform over devices (so the rounding is unbiased over the fleet).
    pub fn alpha(&self, context: &PermanentContext) -> f64 {
        unit(&self.prf(b"hush/alpha/v1", context, None))
    }
}

/// A uniform number in `[0, 1)` from the first 53 bits of a PRF output.
fn unit(full: &[u8; 32]) -> f64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&full[..8]);
    (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn context(metric: &'static str, units: u64) -> PermanentContext {
        PermanentContext {
            metric,
            definition: "numeric|l-onebit|0.0|100.0".into(),
            epsilon_perm_units: units,
        }
    }

    #[test]
    fn derivations_are_stable_and_separate() {
        let a = DeviceSecret::from_bytes([7; 32]);
        let b = DeviceSecret::from_bytes([8; 32]);
        let c = context("clicks", 4_000_000_000);
        assert_eq!(
            a.permanent_rng(&c, 3).next_u64(),
            a.permanent_rng(&c, 3).next_u64()
        );
        assert_ne!(
            a.permanent_rng(&c, 3).next_u64(),
            a.permanent_rng(&c, 4).next_u64()
        );
        assert_ne!(
            a.permanent_rng(&c, 3).next_u64(),
            b.permanent_rng(&c, 3).next_u64()
        );
        assert_ne!(
            a.tag(&c, 3),
            a.tag(&context("keystrokes", 4_000_000_000), 3)
        );
        assert_ne!(a.tag(&c, 3), a.tag(&context("clicks", 3_999_999_999), 3));
        let alpha = a.alpha(&c);
        assert!((0.0..1.0).contains(&alpha));
        assert_eq!(format!("{a:?}"), "DeviceSecret(redacted)");
        // Pinned, and computed independently with Python's hmac module over the
        // same length-prefixed message, so the derivation cannot drift silently
        // (devices would draw new permanent responses, and pay for them, after an upgrade).
        assert_eq!(
            a.tag(&c, 3),
            [
                0x43, 0x28, 0x80, 0x52, 0x00, 0xbf, 0xe9, 0x80, 0xcb, 0xba, 0x26, 0x61, 0x13, 0xf0,
                0x97, 0x82
            ]
        );
    }
}
