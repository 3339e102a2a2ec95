//! placeholder
pub mod archive;
pub mod charm;
pub mod commands;
pub mod error;
pub mod juju;
pub mod progress;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub use error::{Error, ErrorKind, Result};
