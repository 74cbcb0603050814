//! Bearer tokens: random secrets shown once, stored only as SHA-256 hashes.

use rand::CryptoRng;
use sha2::{Digest, Sha256};

use crate::CollectorError;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Upload reports as one device.
    Device,
    /// Read estimates.
    Admin,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Device => "hush_dev_",
            TokenKind::Admin => "hush_adm_",
        }
    }
}

/// A new token: a kind prefix and 32 random bytes in hex.
pub fn new_token<R: CryptoRng + ?Sized>(kind: TokenKind, rng: &mut R) -> String {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    format!("{}{}", kind.prefix(), hex::encode(secret))
}

/// A new token whose secret comes straight from the operating system's generator.
pub fn new_token_from_os(kind: TokenKind) -> Result<String, CollectorError> {
    Ok(format!("{}{}", kind.prefix(), secret_from_os()?))
}

/// 32 bytes from the operating system's generator, in hex: a token's secret,
/// a session id, a form's CSRF token.
pub fn secret_from_os() -> Result<String, CollectorError> {
    hush_web::secret().map_err(|e| CollectorError::Internal(e.to_string()))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
