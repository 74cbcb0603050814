//! Frequency oracles over a finite domain `0..d`, and a by-name enum over all of them.

mod grr;
mod hadamard;
mod olh;
mod unary;

pub use grr::Grr;
pub use hadamard::HadamardResponse;
pub(crate) use olh::hash_into;
pub use olh::{Olh, OlhOutput};
pub use unary::{UnaryEncoding, UnaryVariant};
