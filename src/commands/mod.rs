//! What the actions do, as library calls: options in, stats out, progress supplied by the
//! caller. Nothing here knows of Juju.

pub mod create_backup;
pub mod import;
pub mod journal;
pub mod layout;
pub mod list_backups;
pub mod lock;
pub mod manage;
pub mod mounts;
pub(crate) mod new_backup;
#[cfg(feature = "postgresql")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgresql")))]
pub mod pitr;
pub mod restore;
pub mod services;
pub mod snapshot;
pub mod trash;
pub mod verify;
#[cfg(feature = "postgresql")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgresql")))]
pub mod wal;
