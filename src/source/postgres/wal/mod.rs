//! Point-in-time recovery: the WAL PostgreSQL archives (`wal-push` as its `archive_command`,
//! `wal-fetch` as its `restore_command`), the timelines it branches into, and the window of
//! times a restore can reach.

mod archive;
mod control;
mod index;
mod names;
mod recovery;
mod server;

pub use archive::{ArchivedWal, PushOutcome, WAL_PREFIX, WalArchive};
pub use control::{system_id_of_data_dir, system_id_of_segment};
pub use index::{Ancestry, Reach, Span, Timeline, WalIndex};
pub use names::{SEGMENT_BYTES, WalFile, format_lsn, parse_lsn};
pub use recovery::{Recovered, RecoveryEnd, RecoveryTarget, clear_recovery_settings, pg_time};
pub use server::{ARCHIVE_SETTINGS, ArchiveState, ArchiverStats, Setting};
