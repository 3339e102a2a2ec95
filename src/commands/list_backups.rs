//! `list-backups`: the backups in a store, oldest first, as a table or JSON.

use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;
use crate::store::repo::{Listing, Repository};

/// The listing (see [`Listing`]).
pub type ListBackupsStats = Listing;

/// Lists the backups in `store` (see [`Repository::list`]).
///
/// # Errors
/// When the store cannot be listed.
pub fn list_backups(store: &dyn Store) -> Result<ListBackupsStats> {
    Repository::new(store).list()
}

/// The most text one result may carry: Juju passes each through one `action-set` argument,
/// and documents about 100 KB as the limit.
pub const MAX_RESULT_BYTES: usize = 100_000;

/// Renders `list` with `render`, or fails, when the text is too big for one result, saying
/// which `limit` fits.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] saying which `limit` to use.
pub fn render_fitting(list: &Listing, render: impl Fn(&Listing) -> String) -> Result<String> {
    let text = render(list);
    if text.len() <= MAX_RESULT_BYTES {
        return Ok(text);
    }
    let mut fit = list.backups.len() * MAX_RESULT_BYTES / text.len();
    while fit > 1 {
        let mut fewer = list.clone();
        fewer.keep_newest(fit);
        if render(&fewer).len() <= MAX_RESULT_BYTES {
            break;
        }
        fit = fit * 95 / 100;
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{} backups make a listing of {} bytes, more than a Juju result can carry ({MAX_RESULT_BYTES}): run list-backups with limit={fit} (the newest {fit}) or fewer",
            list.backups.len(),
            text.len()
        ),
    ))
}

/// The point-in-time recovery window of every cluster with archived WAL in `store`, by
/// timeline (see [`crate::commands::pitr::windows`]).
///
/// # Errors
/// When the store cannot be listed.
#[cfg(feature = "postgresql")]
pub fn pitr_windows(
    store: &dyn Store,
    list: &Listing,
) -> Result<Vec<crate::commands::pitr::TimelineWindow>> {
    use crate::source::postgres::wal::{WalArchive, WalIndex};
    let backups = crate::commands::pitr::base_backups(list);
    let mut out = Vec::new();
    for system in WalArchive::systems(store)? {
        let index = WalIndex::load(&WalArchive::new(store, system))?;
        out.extend(crate::commands::pitr::windows(&index, &backups));
    }
    Ok(out)
}

/// The windows as a table under the backups' one.
#[cfg(feature = "postgresql")]
pub fn windows_table(windows: &[crate::commands::pitr::TimelineWindow]) -> String {
    if windows.is_empty() {
        return String::new();
    }
    let mut out = vec![
        String::new(),
        "Point-in-time recovery (restore restore-to-time=TIME between earliest and latest):"
            .to_string(),
    ];
    for w in windows {
        let span = match (&w.earliest, &w.latest) {
            (Some(e), Some(l)) => format!("{e} .. {l}"),
            _ => "no base backup reaches it".to_string(),
        };
        let gaps = if w.gaps.is_empty() {
            String::new()
        } else {
            format!("; MISSING WAL {}", w.gaps.join(", "))
        };
        out.push(format!(
            "cluster {} timeline {}: {span} ({} segments archived, last {}){gaps}",
            w.system_id, w.timeline, w.segments, w.last_segment
        ));
    }
    out.join("\n")
}
