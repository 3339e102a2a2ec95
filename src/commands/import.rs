//! `import-backup`: puts an archive made elsewhere (a snapshot copied off a unit, a backup
//! fetched from another store) into the backup store, as `juju backups upload` does for
//! controllers. The archive is read whole first, by the rules a restore applies; a file that is
//! not a charm-backup archive is refused.

use std::io::Write;
use std::path::PathBuf;

use crate::archive::{
    AGE_MAGIC, ArchiveInfo, ArchiveSource, Compression, HashingWriter, Limits, read_manifest_only,
};
use crate::commands::new_backup::{NewBackup, Writer};
use crate::commands::verify::check_archive;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::repo::{BackupMetadata, Repository};

/// How to import.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportBackupOptions {
    /// The limits a restore applies.
    pub limits: Limits,
    /// Where `pg_restore` is, when not Debian's for the dump's server version.
    pub pg_bin_dir: Option<PathBuf>,
    /// The unit's state directory (its lock).
    pub state_dir: PathBuf,
    /// The application (the archive name's prefix and the store path's owner).
    pub name_prefix: String,
    /// Juju model name, recorded.
    pub model: String,
    /// Juju model UUID, recorded.
    pub model_uuid: String,
    /// The unit importing (`app/N`): its number goes in the id.
    pub made_by: String,
}

/// What an import stored.
#[derive(Debug, Clone, Default)]
pub struct ImportBackupStats {
    /// The new backup's metadata.
    pub metadata: BackupMetadata,
    /// The store's URL of the archive.
    pub url: String,
    /// The archive as checked.
    pub archive: ArchiveInfo,
}

/// Checks the archive in `source` and stores it in `store` as a new backup (origin
/// `imported`), with the sources, unit and time its manifest records. An encrypted archive
/// is stored as it is, encrypted to the recipients of the identities that read it.
///
/// # Errors
/// [`ErrorKind::Integrity`] when it is not a charm-backup archive or would not restore; as
/// `create-backup` when the store cannot be written.
pub fn import_backup(
    store: &dyn Store,
    source: &dyn ArchiveSource,
    options: &ImportBackupOptions,
    progress: &dyn Progress,
) -> Result<ImportBackupStats> {
    let refuse = |e: Error| {
        Error::new(
            e.kind(),
            format!(
                "{} cannot be imported: {}",
                source.name(),
                crate::error::chain(&e)
            ),
        )
    };
    let mut head = [0u8; 21];
    let sealed = source
        .open()
        .and_then(|mut r| {
            std::io::Read::read_exact(&mut r, &mut head).map_err(|e| {
                Error::new(ErrorKind::Integrity, "the file is too short").with_source(e)
            })
        })
        .is_ok_and(|()| head == AGE_MAGIC);
    if sealed && source.identities().is_none() {
        return Err(Error::invalid(format!(
            "{} is encrypted with age: set encryption-identity-secret to a secret holding its \
             identity, so it can be checked before it is stored",
            source.name()
        )));
    }
    progress.step(&format!("checking {}", source.name()));
    let manifest = read_manifest_only(source).map_err(refuse)?;
    let checked = check_archive(
        source,
        &manifest.sources,
        None,
        options.limits,
        options.pg_bin_dir.as_deref(),
        progress,
    )
    .map_err(refuse)?;
    progress.step(&format!(
        "{} holds {} entries of {}, taken {} on {} for {}",
        source.name(),
        checked.archive.entries,
        manifest.roots().join(" "),
        manifest.started,
        manifest.host,
        manifest.unit
    ));
    let writer = Writer {
        what: "import-backup",
        state_dir: &options.state_dir,
        lock_wait: std::time::Duration::ZERO,
        application: &options.name_prefix,
        model: &options.model,
        model_uuid: &options.model_uuid,
        made_by: &options.made_by,
        take_over_store: false,
    };
    let mut new = NewBackup::begin(store, &writer, progress)?;
    let compression = checked.archive.compression.unwrap_or(Compression::Gzip);
    let m = &mut new.meta;
    m.kind = "full".into();
    m.compression = compression.name().into();
    let extension = format!(
        "{}{}",
        compression.extension(),
        if sealed {
            crate::archive::AGE_SUFFIX
        } else {
            ""
        }
    );
    m.archive = Repository::archive_key(&m.id, &options.name_prefix, &extension);
    m.sources = manifest.sources.clone();
    m.unit = manifest.unit.clone();
    m.tool = format!("charm-backup {}", env!("CARGO_PKG_VERSION"));
    m.origin = "imported".into();
    m.notes = format!(
        "imported from {}; taken {} on {} by {}",
        source.name(),
        manifest.started,
        manifest.host,
        manifest.tool
    );
    if sealed && let Some(ids) = source.identities() {
        m.encrypted_to = ids.recipients();
    }
    let key = m.archive.clone();
    let expected = checked.archive.sha256.clone();
    let (meta, _) = new.write(
        progress,
        |w| {
            let mut out = HashingWriter::new(w);
            let mut r = source.open()?;
            std::io::copy(&mut r, &mut out)
                .map_err(|e| Error::new(ErrorKind::Other, "cannot copy the archive").with_source(e))?;
            out.flush()
                .map_err(|e| Error::new(ErrorKind::Other, "cannot copy the archive").with_source(e))?;
            let (w, sha256, size) = out.finish();
            if sha256 != expected {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "{} changed while it was imported (sha256 {sha256}, checked as {expected}): \
                         import it again once nothing writes it",
                        source.name()
                    ),
                ));
            }
            Ok((w, size))
        },
        |meta, size| {
            meta.sha256 = expected.clone();
            meta.size = *size;
        },
    )?;
    Ok(ImportBackupStats {
        url: store.url(&key),
        metadata: meta,
        archive: checked.archive,
    })
}
