//! etcd: consistent v3 snapshots through `etcdctl snapshot save` from the running member (not
//! a copy of its live `db` file), and restores through `etcdctl snapshot restore` into a fresh
//! data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::source::process::run;

/// Where the snapshot sits inside an archive.
pub const SNAPSHOT_ENTRY: &str = ".charm-backup/etcd/snapshot.db";

/// How to reach the etcd member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdOptions {
    /// Client URL of one member, e.g. `https://127.0.0.1:2379`.
    pub endpoint: String,
    /// CA certificate file, for TLS.
    pub cacert: Option<PathBuf>,
    /// Client certificate file, for TLS.
    pub cert: Option<PathBuf>,
    /// Client key file, for TLS.
    pub key: Option<PathBuf>,
}

/// How to restore a member from a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdRestoreOptions {
    /// The member's data directory (swapped for the restored one).
    pub data_dir: PathBuf,
    /// The member's name.
    pub name: String,
    /// The member's peer URL, e.g. `http://10.0.0.5:2380`.
    pub peer_url: String,
    /// The running member, asked for the cluster's members before anything is touched.
    pub client: Option<EtcdOptions>,
    /// Restore though the member cannot be asked (a single member that cannot start).
    pub allow_unreachable: bool,
}

/// What a restore made: a new single-member cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdRestored {
    /// The new cluster's id (hex, as etcd prints it).
    pub cluster_id: String,
    /// The member's name.
    pub name: String,
    /// The member's peer URL.
    pub peer_url: String,
}

/// A member of an etcd cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdMember {
    /// Its name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
}

/// The members of the cluster the member at `options.endpoint` belongs to.
///
/// # Errors
/// [`ErrorKind::Connect`] when it cannot be reached; [`ErrorKind::SourceFailed`] when its
/// answer cannot be read.
pub fn members(options: &EtcdOptions) -> Result<Vec<EtcdMember>> {
    let out = run(
        etcdctl(options).args(["member", "list", "-w", "json"]),
        "list the etcd cluster's members",
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Connect,
            format!("cannot reach etcd at {}: {e}", options.endpoint),
        )
    })?;
    let v: Value = serde_json::from_slice(&out).map_err(|e| {
        Error::new(
            ErrorKind::SourceFailed,
            "etcdctl member list printed no JSON",
        )
        .with_source(e)
    })?;
    Ok(v.get("members")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| EtcdMember {
                    name: m.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    peer_urls: m
                        .get("peerURLs")
                        .and_then(Value::as_array)
                        .map(|u| {
                            u.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Refuses a restore into a member of a cluster of more than one member: the restored member
/// starts a new cluster of its own, and the others are left broken. Run before anything is
/// touched; returns what was checked, for the log.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for a cluster of several members, or one that cannot be asked
/// (unless `allow_unreachable`).
pub fn check_single_member(options: &EtcdRestoreOptions) -> Result<String> {
    let unreachable = |why: String| {
        if options.allow_unreachable {
            Ok(format!(
                "{why}; restoring anyway (allow-unreachable-etcd), as a single member"
            ))
        } else {
            Err(Error::invalid(format!(
                "{why}, so restore cannot check that the cluster has a single member (restoring \
                 one member of a larger cluster breaks it): start etcd and run restore again \
                 (the services option stops it for the swap); if this is a single-member \
                 deployment whose etcd cannot start, pass allow-unreachable-etcd=true"
            )))
        }
    };
    let Some(client) = &options.client else {
        return unreachable("etcd-endpoint is not set".into());
    };
    let members = match members(client) {
        Ok(m) => m,
        Err(e) => return unreachable(e.to_string()),
    };
    if members.is_empty() {
        return unreachable(format!("etcd at {} listed no members", client.endpoint));
    }
    if members.len() > 1 {
        let mut names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        return Err(Error::invalid(format!(
            "etcd at {} is one of {} cluster members ({}): restoring a snapshot into one member \
             of a scaled cluster breaks the cluster, so nothing was changed. Restore into a \
             single-unit deployment (juju deploy etcd new-etcd, with the snapshot), then scale \
             out with juju add-unit",
            client.endpoint,
            members.len(),
            names.join(", ")
        )));
    }
    Ok(format!(
        "etcd at {} is a single-member cluster: restoring it",
        client.endpoint
    ))
}

/// A snapshot taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdSnapshot {
    /// The snapshot file.
    pub path: PathBuf,
    /// What to record: server version, revision, key count, hash.
    pub details: BTreeMap<String, String>,
}

fn etcdctl(options: &EtcdOptions) -> Command {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", options.endpoint));
    if let Some(p) = &options.cacert {
        c.arg(format!("--cacert={}", p.display()));
    }
    if let Some(p) = &options.cert {
        c.arg(format!("--cert={}", p.display()));
    }
    if let Some(p) = &options.key {
        c.arg(format!("--key={}", p.display()));
    }
    c
}

/// Takes a snapshot into `dir` (a file named `etcd-snapshot.db`, mode `0600`) and reads the
/// server's version and the snapshot's revision, key count and hash.
///
/// # Errors
/// When `etcdctl` is missing, the member cannot be reached, or the snapshot is not valid.
pub fn save(options: &EtcdOptions, dir: &Path) -> Result<EtcdSnapshot> {
    if options.endpoint.is_empty() {
        return Err(Error::invalid("no etcd endpoint is configured"));
    }
    crate::archive::create_private_dir(dir)?;
    let path = dir.join("etcd-snapshot.db");
    let _ = std::fs::remove_file(&path);
    let mut details = BTreeMap::new();
    let status = run(
        etcdctl(options).args(["endpoint", "status", "-w", "json"]),
        "read the etcd member's status",
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Connect,
            format!("cannot reach etcd at {}: {e}", options.endpoint),
        )
    })?;
    if let Ok(v) = serde_json::from_slice::<Value>(&status)
        && let Some(s) = v.get(0).and_then(|e| e.get("Status"))
    {
        if let Some(ver) = s.get("version").and_then(Value::as_str) {
            details.insert("version".into(), ver.to_string());
        }
        if let Some(id) = s.pointer("/header/cluster_id").and_then(Value::as_u64) {
            details.insert("cluster-id".into(), format!("{id:x}"));
        }
    }
    run(
        etcdctl(options).args(["snapshot", "save"]).arg(&path),
        "save an etcd snapshot",
    )?;
    let st = run(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(&path),
        "check the etcd snapshot",
    )?;
    let v: Value = serde_json::from_slice(&st).map_err(|e| {
        Error::new(
            ErrorKind::SourceFailed,
            "etcdctl snapshot status printed no JSON",
        )
        .with_source(e)
    })?;
    for (k, name) in [
        ("revision", "revision"),
        ("totalKey", "keys"),
        ("hash", "hash"),
    ] {
        if let Some(n) = v.get(k).and_then(Value::as_u64) {
            details.insert(name.into(), n.to_string());
        }
    }
    details.insert("endpoint".into(), options.endpoint.clone());
    Ok(EtcdSnapshot { path, details })
}

/// Restores `snapshot` into `into` (which must not exist) as member `options.name` at
/// `options.peer_url`, a new single-member cluster, as the etcd charm's restore does.
///
/// # Errors
/// When `etcdctl` fails.
pub fn restore(snapshot: &Path, options: &EtcdRestoreOptions, into: &Path) -> Result<EtcdRestored> {
    if options.name.is_empty() || options.peer_url.is_empty() {
        return Err(Error::invalid(
            "restoring etcd needs the member's name and peer URL: set etcd-name and etcd-peer-url",
        ));
    }
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg(format!("--name={}", options.name))
        .arg(format!("--data-dir={}", into.display()))
        .arg(format!(
            "--initial-cluster={}={}",
            options.name, options.peer_url
        ))
        .arg(format!(
            "--initial-advertise-peer-urls={}",
            options.peer_url
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::new(ErrorKind::NotFound, "cannot run etcdctl").with_source(e))?;
    // etcdctl logs JSON lines; "added member" names the new cluster.
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::SourceFailed,
            format!(
                "etcdctl failed to restore the etcd snapshot ({}): {}",
                out.status,
                text.trim()
            ),
        ));
    }
    let cluster_id = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| {
            v.get("cluster-id")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_default();
    Ok(EtcdRestored {
        cluster_id,
        name: options.name.clone(),
        peer_url: options.peer_url.clone(),
    })
}

/// Checks an etcd snapshot as `etcdctl snapshot save` writes it, in one pass: a bbolt database
/// followed by the SHA-256 of everything before it (the trailer `etcdctl snapshot restore`
/// checks). Returns the snapshot's size.
///
/// # Errors
/// [`ErrorKind::Integrity`] when it is too short or its trailer does not match.
pub fn check_snapshot(data: &mut dyn std::io::Read) -> Result<u64> {
    use sha2::Digest;
    const TRAILER: usize = 32;
    let mut hasher = sha2::Sha256::new();
    // The last TRAILER bytes seen are held back: they may be the trailer.
    let mut held: Vec<u8> = Vec::with_capacity(TRAILER);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = crate::archive::fill(data, &mut buf).map_err(|e| {
            Error::new(ErrorKind::Integrity, "cannot read the etcd snapshot").with_source(e)
        })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        held.extend_from_slice(&buf[..n]);
        if held.len() > TRAILER {
            let cut = held.len() - TRAILER;
            hasher.update(&held[..cut]);
            held.drain(..cut);
        }
    }
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::Integrity,
            format!("the etcd snapshot is damaged: {why}"),
        ))
    };
    if held.len() < TRAILER || total < 4096 {
        return bad("it is too short to be a snapshot");
    }
    if hasher.finalize().as_slice() != held.as_slice() {
        return bad("its SHA-256 trailer does not match its content");
    }
    Ok(total)
}
