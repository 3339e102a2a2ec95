//! # charm-backup
//!
//! Real snapshot, restore, create-backup and list-backups actions for Juju charms, as a
//! library charm authors embed and as the `charm-backup` subordinate charm built from it.
//!
//! ## Overview
//!
//! - [`juju`] is the Juju boundary, and the only module that knows of hook tools, `JUJU_*`
//!   variables, action params or result keys: [`juju::HookTools`] (one typed method per hook
//!   tool), [`juju::JujuContext`] (the environment, read once), and the API an action is written
//!   against: [`juju::Action`], [`juju::Context`], [`juju::Charm`]. An action fails by returning
//!   `Err`; the runner turns the whole error chain (or a panic) into `action-fail` and still
//!   exits 0, as Juju needs.
//! - [`archive`] is the engine: one streaming pass writes a `.tar.gz` (or `.tar.zst`) and its
//!   SHA-256; reading checks every entry before anything is written.
//! - [`store`] holds backups (a local directory; S3 behind the same trait).
//! - [`commands`] are the operations as library calls: `*Options` in, `*Stats` out, progress
//!   through a caller-supplied [`progress::Progress`]. They know nothing of Juju.
//! - `charm` (feature `charm`) is the charm itself: its actions and hooks map params to options and stats to
//!   results.
//! - `testing` (feature `testing`) runs actions and hooks in-process against given params,
//!   config, relations, leadership and resources, checking params against `actions.yaml` as
//!   Juju does.
//!
//! ## Example
//!
//! An action of your own, wired into a charm binary:
//!
//! ```no_run
//! use charm_backup::commands::snapshot::{SnapshotOptions, snapshot};
//! use charm_backup::juju::{Action, BoxError, Charm, Context};
//! use serde::{Deserialize, Serialize};
//!
//! struct Snap;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case", deny_unknown_fields)]
//! struct Params { target: String }
//!
//! #[derive(Serialize)]
//! struct Results { path: String, sha256: String }
//!
//! impl Action for Snap {
//!     const NAME: &'static str = "snapshot";
//!     type Params = Params;
//!     type Results = Results;
//!     fn run(&self, ctx: &mut Context, p: Params) -> Result<Results, BoxError> {
//!         let options = SnapshotOptions::new(vec!["/etc/myapp".into()])
//!             .with_exclude(vec!["*.sock".into()])
//!             .with_unit(ctx.juju().unit_name.clone());
//!         // Steps, warnings and bytes done go to `action-log`; a second snapshot in the same
//!         // second lands as myapp-1.tar.gz.
//!         let stats = snapshot(p.target.as_ref(), "myapp.tar.gz", &options, &ctx.progress())?;
//!         Ok(Results { path: stats.path.display().to_string(), sha256: stats.archive.sha256 })
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     Charm::new().action(Snap).main()
//! }
//! ```
//!
//! ## Features
//!
//! With no features (the default) a charm gets paths, archives, the local store, snapshot,
//! restore and the Juju layer, and its tree holds no async runtime, HTTP, TLS or database
//! client. Turn on what it needs:
//!
//! - `s3`: S3 as a backup store and S3 buckets as a source (`object_store`, `reqwest`,
//!   `rustls`, `tokio`).
//! - `postgresql`: PostgreSQL as a source (`postgres`, `rustls`).
//! - `etcd`: etcd as a source (through `etcdctl`; no crate of its own).
//! - `encryption`: archives encrypted to age X25519 recipients (the `age` crate); without it
//!   no recipient can be given, so nothing is written in plaintext in place of an encrypted
//!   archive, and an encrypted one is refused saying so.
//! - `zstd`: zstd compression besides gzip (the C zstd library).
//! - `charm`: this charm's own actions and hooks (the `charm` module) and its `dispatch`
//!   binary; turns on all of the above.
//! - `testing`: the in-process harness (the `testing` module); pulls a YAML parser and a JSON
//!   Schema validator, so it stays out of packed charms.
//! - `agent`: the `charm-backup` local agent binary (adds `clap` and `anyhow`).

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod archive;
#[cfg(feature = "charm")]
#[cfg_attr(docsrs, doc(cfg(feature = "charm")))]
pub mod charm;
pub mod commands;
pub mod encoding;
pub mod error;
pub mod juju;
pub mod progress;
pub mod schedule;
pub mod source;
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use error::{Error, ErrorKind, Result};
