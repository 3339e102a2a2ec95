//! placeholder
pub mod error;
pub mod juju;
#[cfg(feature = "testing")]
pub mod testing;
pub use error::{Error, ErrorKind, Result};
