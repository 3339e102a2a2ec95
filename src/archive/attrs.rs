//! What GNU tar's `--xattrs --acls` keeps beyond mode, owner and whole-second mtime: extended
//! attributes (`user.*`, `trusted.*`, `security.*`, file capabilities included), POSIX ACLs,
//! and the mtime's nanoseconds, as PAX records (`SCHILY.xattr.<name>`, `SCHILY.acl.access`,
//! `SCHILY.acl.default`, `mtime`) in an extended header before the entry.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::encoding::{base64, base64_decode, percent_decode, percent_encode};
use crate::error::{IoContext, Result};

const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";
const PAX_ACL_ACCESS: &str = "SCHILY.acl.access";
const PAX_ACL_DEFAULT: &str = "SCHILY.acl.default";
const PAX_XATTR: &str = "SCHILY.xattr.";
/// libarchive's key for an attribute whose value holds a newline (base64 value, name
/// percent-encoded), which tar readers that split records on newlines cannot take raw.
const PAX_XATTR_B64: &str = "LIBARCHIVE.xattr.";

/// An entry's attributes beyond its tar header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// The mtime's nanoseconds.
    pub mtime_nsec: u32,
    /// Extended attributes other than ACLs, by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The access ACL, in text form (`user::rw-,user:1000:r--,group::r--,mask::r--,other::---`).
    pub acl_access: Option<String>,
    /// A directory's default ACL, in text form.
    pub acl_default: Option<String>,
}

impl Attrs {
    /// Reads what `path` has (not following a symlink); what the filesystem does not support
    /// is simply absent.
    pub fn read(path: &Path, meta: &Metadata) -> Attrs {
        let mut a = Attrs {
            mtime_nsec: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            ..Attrs::default()
        };
        if meta.file_type().is_symlink() {
            return a;
        }
        let Ok(names) = xattr::list(path) else {
            return a;
        };
        for name in names {
            let Some(name) = name.to_str().map(str::to_string) else {
                continue;
            };
            let Ok(Some(value)) = xattr::get(path, &name) else {
                continue;
            };
            match name.as_str() {
                ACL_ACCESS => a.acl_access = acl_to_text(&value),
                ACL_DEFAULT => a.acl_default = acl_to_text(&value),
                n if n.starts_with("user.")
                    || n.starts_with("trusted.")
                    || n.starts_with("security.") =>
                {
                    a.xattrs.push((name, value));
                }
                _ => {}
            }
        }
        a.xattrs.sort();
        a
    }

    /// The PAX extended header's content for these attributes (empty when there is nothing
    /// a plain header does not hold).
    pub fn pax(&self, mtime: u64) -> Vec<u8> {
        let mut out = Vec::new();
        if self.mtime_nsec != 0 {
            record(
                &mut out,
                "mtime",
                format!("{mtime}.{:09}", self.mtime_nsec).as_bytes(),
            );
        }
        if let Some(t) = &self.acl_access {
            record(&mut out, PAX_ACL_ACCESS, t.as_bytes());
        }
        if let Some(t) = &self.acl_default {
            record(&mut out, PAX_ACL_DEFAULT, t.as_bytes());
        }
        for (name, value) in &self.xattrs {
            if value.contains(&b'\n') || name.contains(['\n', '=', '%']) {
                record(
                    &mut out,
                    &format!("{PAX_XATTR_B64}{}", percent_encode(name)),
                    base64(value).as_bytes(),
                );
            } else {
                record(&mut out, &format!("{PAX_XATTR}{name}"), value);
            }
        }
        out
    }

    /// The attributes an entry's PAX records give.
    pub fn from_pax<'a>(records: impl Iterator<Item = (&'a str, &'a [u8])>) -> Attrs {
        let mut a = Attrs::default();
        for (key, value) in records {
            let text = || String::from_utf8_lossy(value).into_owned();
            match key {
                "mtime" => {
                    a.mtime_nsec = text()
                        .split_once('.')
                        .map(|(_, frac)| {
                            let digits: String = frac.chars().take(9).collect();
                            format!("{digits:0<9}").parse().unwrap_or(0)
                        })
                        .unwrap_or(0);
                }
                PAX_ACL_ACCESS => a.acl_access = Some(text()),
                PAX_ACL_DEFAULT => a.acl_default = Some(text()),
                k => {
                    if let Some(name) = k.strip_prefix(PAX_XATTR) {
                        a.xattrs.push((name.to_string(), value.to_vec()));
                    } else if let Some(name) = k.strip_prefix(PAX_XATTR_B64)
                        && let Some(v) = base64_decode(value)
                    {
                        a.xattrs.push((percent_decode(name), v));
                    }
                }
            }
        }
        a
    }

    /// Applies the ACLs and extended attributes to `f` (at `dest`), after its owner and mode
    /// are set: a change of owner clears file capabilities, and a change of mode rewrites
    /// the ACL's mask.
    ///
    /// # Errors
    /// When the filesystem refuses an attribute the archive holds.
    pub fn apply(&self, f: &File, dest: &Path) -> Result<()> {
        use xattr::FileExt;
        for (name, text) in [
            (ACL_ACCESS, &self.acl_access),
            (ACL_DEFAULT, &self.acl_default),
        ] {
            if let Some(bin) = text.as_deref().and_then(acl_from_text) {
                f.set_xattr(name, &bin).at("cannot set the ACL of", dest)?;
            }
        }
        for (name, value) in &self.xattrs {
            f.set_xattr(name, value).at(
                &format!("cannot set the extended attribute {name} of"),
                dest,
            )?;
        }
        Ok(())
    }
}

/// Appends one PAX record, `<length> <key>=<value>\n`, the length counting itself.
fn record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest > len {
        len += 1;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// The kernel's ACL xattr (version 2, then `tag:u16 perm:u16 id:u32` entries) as text with
/// numeric ids, as `setfacl` and GNU tar read it.
fn acl_to_text(bin: &[u8]) -> Option<String> {
    let (head, body) = bin.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != 2 || body.len() % 8 != 0 {
        return None;
    }
    let mut parts = Vec::new();
    for e in body.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let rwx: String = [(4, 'r'), (2, 'w'), (1, 'x')]
            .iter()
            .map(|&(bit, c)| if perm & bit != 0 { c } else { '-' })
            .collect();
        let who = match tag {
            TAG_USER_OBJ => "user::".to_string(),
            TAG_USER => format!("user:{id}:"),
            TAG_GROUP_OBJ => "group::".to_string(),
            TAG_GROUP => format!("group:{id}:"),
            TAG_MASK => "mask::".to_string(),
            TAG_OTHER => "other::".to_string(),
            _ => return None,
        };
        parts.push(format!("{who}{rwx}"));
    }
    Some(parts.join(","))
}

/// Text ACL (entries separated by commas or newlines, ids numeric or names) back to the
/// kernel's xattr form.
fn acl_from_text(text: &str) -> Option<Vec<u8>> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for entry in text
        .split([',', '\n'])
        .map(|e| e.split('#').next().unwrap_or("").trim())
        .filter(|e| !e.is_empty())
    {
        let mut f = entry.splitn(3, ':');
        let (kind, who, rwx) = (f.next()?, f.next()?, f.next()?);
        let id = |user: bool| -> Option<u32> {
            if let Ok(n) = who.parse() {
                return Some(n);
            }
            if user {
                nix::unistd::User::from_name(who)
                    .ok()?
                    .map(|u| u.uid.as_raw())
            } else {
                nix::unistd::Group::from_name(who)
                    .ok()?
                    .map(|g| g.gid.as_raw())
            }
        };
        let (tag, id) = match (kind, who.is_empty()) {
            ("user" | "u", true) => (TAG_USER_OBJ, UNDEFINED_ID),
            ("user" | "u", false) => (TAG_USER, id(true)?),
            ("group" | "g", true) => (TAG_GROUP_OBJ, UNDEFINED_ID),
            ("group" | "g", false) => (TAG_GROUP, id(false)?),
            ("mask" | "m", _) => (TAG_MASK, UNDEFINED_ID),
            ("other" | "o", _) => (TAG_OTHER, UNDEFINED_ID),
            _ => return None,
        };
        let perm = rwx.chars().fold(0u16, |p, c| match c {
            'r' => p | 4,
            'w' => p | 2,
            'x' => p | 1,
            _ => p,
        });
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_round_trip_between_the_kernel_form_and_text() {
        let text = "user::rw-,user:1000:r--,group::r--,group:27:rwx,mask::r-x,other::---";
        let bin = acl_from_text(text).unwrap();
        assert_eq!(bin.len(), 4 + 6 * 8);
        assert_eq!(acl_to_text(&bin).unwrap(), text);
        // Newline-separated, with comments, as getfacl prints it.
        let long = "# file: x\nuser::rw-\nuser:1000:r--\ngroup::r--\ngroup:27:rwx\nmask::r-x\nother::---\n";
        assert_eq!(acl_from_text(long).unwrap(), bin);
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let mut out = Vec::new();
        record(&mut out, "mtime", b"1700000000.123456789");
        assert_eq!(out, b"30 mtime=1700000000.123456789\n");
        let a = Attrs {
            mtime_nsec: 5,
            xattrs: vec![("user.k".into(), b"v\n=\0".to_vec())],
            acl_access: Some("user::rw-,group::r--,other::---".into()),
            acl_default: None,
        };
        let pax = a.pax(7);
        let mut parsed = Vec::new();
        let mut rest = pax.as_slice();
        while !rest.is_empty() {
            let sp = rest.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            let rec = &rest[sp + 1..len - 1];
            let eq = rec.iter().position(|&b| b == b'=').unwrap();
            parsed.push((std::str::from_utf8(&rec[..eq]).unwrap(), &rec[eq + 1..]));
            rest = &rest[len..];
        }
        assert_eq!(Attrs::from_pax(parsed.into_iter()), a);
    }
}
