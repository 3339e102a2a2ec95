//! The charm-backup charm itself: its actions and hooks, built on the Juju layer and the
//! library commands.

pub mod actions;
pub mod config;
pub mod hooks;
pub mod own_dirs;
pub mod s3;
pub mod schedule;
pub mod wal;

use crate::juju::Charm;
use crate::schedule::Systemd;

/// The whole charm, as the `dispatch` binary runs it.
pub fn charm() -> Charm {
    charm_on(Systemd::default())
}

/// The whole charm on a machine whose systemd unit files and `systemctl` are `systemd`.
pub fn charm_on(systemd: Systemd) -> Charm {
    Charm::new()
        .action(actions::Snapshot)
        .action(actions::Restore)
        .action(actions::CreateBackup)
        .action(actions::ListBackups)
        .action(actions::ShowBackup)
        .action(actions::RemoveBackup)
        .action(actions::VerifyBackup)
        .action(actions::PruneBackups)
        .action(actions::ImportBackup)
        .hooks(hooks::handler(systemd))
        .before(hooks::recover_interrupted)
}
