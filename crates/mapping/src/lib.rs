//! Pure validation and mapping for the four flows of ping-primero. Value maps arrive as data
//! ([`Maps`]); no IO and no clock reading happen in this crate.

pub mod flow11;
pub mod flow12;
pub mod flow21;
pub mod flow22;
pub mod hash;
pub mod maps;
pub use hash::payload_hash;
pub use maps::*;
