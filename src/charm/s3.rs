//! The `s3-parameters` relation: the settings the s3-integrator charm publishes, turned into
//! a store.
//!
//! Both versions of the `s3` interface are read: v0 (s3-integrator 1) puts `access-key` and
//! `secret-key` in the relation data; v1 (s3-integrator 2) puts them in a Juju secret whose
//! URI is in `secret-extra`, read with `secret-get` (the values travel on the tool's output,
//! never on a command line, and are never logged).

use crate::error::{Error, ErrorKind};
use crate::juju::{BoxError, Context};
use crate::store::S3Options;

/// The relation endpoint of the backup store.
pub const ENDPOINT: &str = "s3-parameters";
/// The relation endpoint of the S3 gateway whose buckets are backed up.
pub const SOURCE_ENDPOINT: &str = "s3-source";

/// What the relation holds: the remote application, and its settings or why they cannot be
/// read.
#[derive(Debug)]
pub struct S3Relation {
    /// The remote application.
    pub app: String,
    /// The settings, or why they cannot be had (a `secret-extra` secret that cannot be read);
    /// the message says what to fix and never holds a credential.
    pub options: crate::Result<S3Options>,
}

/// The `s3-parameters` relation, if it exists (complete or not).
///
/// # Errors
/// When a relation tool fails.
pub fn s3_relation(ctx: &Context) -> Result<Option<S3Relation>, BoxError> {
    s3_relation_on(ctx, ENDPOINT)
}

/// The relation on `endpoint` (`s3-parameters` or `s3-source`), if it exists.
///
/// # Errors
/// When a relation tool fails.
pub fn s3_relation_on(ctx: &Context, endpoint: &str) -> Result<Option<S3Relation>, BoxError> {
    let Some(rel) = ctx.relation(endpoint)? else {
        return Ok(None);
    };
    let get = |k: &str| rel.data.get(k).cloned().unwrap_or_default();
    let ca_chain = ca_chain(&get("tls-ca-chain"));
    let mut o = S3Options {
        bucket: get("bucket"),
        endpoint: get("endpoint"),
        region: get("region"),
        path: get("path"),
        access_key: get("access-key"),
        secret_key: get("secret-key"),
        uri_style: get("s3-uri-style"),
        ca_chain,
        storage_class: get("storage-class"),
        attributes: attributes(&get("attributes")),
    };
    let secret = get("secret-extra");
    let options = if secret.trim().is_empty() {
        Ok(o)
    } else {
        credentials(ctx, &rel.app, secret.trim()).map(|(access, key)| {
            o.access_key = access;
            o.secret_key = key;
            o
        })
    };
    Ok(Some(S3Relation {
        app: rel.app.clone(),
        options,
    }))
}

/// The remote application and the S3 settings it published, if the relation exists (complete
/// or not).
///
/// # Errors
/// When a relation tool fails, or the credentials in the `secret-extra` secret cannot be
/// read (the message says what to fix).
pub fn s3_options(ctx: &Context) -> Result<Option<(String, S3Options)>, BoxError> {
    match s3_relation(ctx)? {
        None => Ok(None),
        Some(r) => Ok(Some((r.app, r.options?))),
    }
}

/// The S3 gateway and buckets `s3-source` and `s3-source-buckets` name, or `None` when
/// neither is set.
///
/// # Errors
/// When only one of them is set, or the relation's settings are not usable (the message says
/// what to fix).
pub fn s3_source(
    ctx: &Context,
    buckets: &str,
) -> Result<Option<crate::source::s3::S3SourceOptions>, BoxError> {
    use crate::source::s3::{Buckets, S3SourceOptions};
    let rel = s3_relation_on(ctx, SOURCE_ENDPOINT)?;
    let names: Vec<String> = buckets.split_whitespace().map(str::to_string).collect();
    let (rel, names) = match (rel, names.is_empty()) {
        (None, true) => return Ok(None),
        (None, false) => {
            return Err(Error::invalid(
                "s3-source-buckets is set but nothing is related on s3-source: juju integrate \
                 <app>:s3-source <s3-integrator for the gateway>",
            )
            .into());
        }
        (Some(r), true) => {
            return Err(Error::invalid(format!(
                "s3-source is related to {}: set s3-source-buckets to the buckets to back up \
                 (\"*\" for every bucket the credentials can list)",
                r.app
            ))
            .into());
        }
        (Some(r), false) => (r, names),
    };
    let mut o = rel.options?;
    // The gateway's settings serve every bucket; the store client needs one to start with.
    if o.bucket.trim().is_empty() {
        o.bucket = names
            .iter()
            .find(|n| n.as_str() != "*")
            .cloned()
            .unwrap_or_else(|| "charm-backup".into());
    }
    o.path = String::new();
    let client = crate::store::S3Store::open(&o).map_err(|e| {
        Error::new(
            e.kind(),
            format!("the s3-source settings from {}: {e}", rel.app),
        )
    })?;
    // The backup store's own bucket is never a source: each backup would hold the earlier.
    let store_bucket = match s3_relation(ctx)? {
        Some(store) => store
            .options
            .ok()
            .filter(|s| s.endpoint.trim_end_matches('/') == o.endpoint.trim_end_matches('/'))
            .map(|s| s.bucket),
        None => None,
    };
    if let Some(b) = &store_bucket
        && names.contains(b)
    {
        return Err(Error::invalid(format!(
            "s3-source-buckets names {b}, the bucket backups are stored in: remove it, or every \
             backup would hold the earlier ones"
        ))
        .into());
    }
    let buckets = if names.iter().any(|n| n == "*") {
        Buckets::All {
            except: store_bucket.into_iter().collect(),
        }
    } else {
        Buckets::Named(names)
    };
    Ok(Some(S3SourceOptions {
        client: std::sync::Arc::new(client),
        endpoint: if o.endpoint.is_empty() {
            "s3.amazonaws.com".into()
        } else {
            o.endpoint.clone()
        },
        buckets,
        parallel: 8,
    }))
}

/// `access-key` and `secret-key` from the v1 interface's `secret-extra` secret.
fn credentials(ctx: &Context, app: &str, uri: &str) -> crate::Result<(String, String)> {
    let read = |key: &str| {
        let value = ctx.secret(uri, key).map_err(|e| {
            Error::new(
                match e.kind() {
                    ErrorKind::NotFound | ErrorKind::PermissionDenied => e.kind(),
                    _ => ErrorKind::InvalidInput,
                },
                format!(
                    "the S3 credentials from {app} (secret-extra) cannot be read: {e}; if the \
                     secret is gone, remove and re-add the relation to {app}"
                ),
            )
        })?;
        if value.is_empty() {
            return Err(Error::invalid(format!(
                "the S3 credentials from {app}: key {key:?} of secret {uri} (secret-extra) is \
                 empty: set the credentials on {app}"
            )));
        }
        Ok(value)
    };
    Ok((read("access-key")?, read("secret-key")?))
}

/// The `Header=value` items of `attributes`: a JSON list of them (as s3-integrator publishes
/// it), or one string of them separated by `;` (as the interface's example shows).
fn attributes(text: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(text).unwrap_or_else(|_| {
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
}

/// The CA certificates of `tls-ca-chain`: a JSON list of PEM strings (v0) or of base64-encoded
/// PEM (v1), or one PEM bundle.
fn ca_chain(ca: &str) -> Vec<String> {
    if ca.is_empty() {
        return Vec::new();
    }
    serde_json::from_str::<Vec<String>>(ca)
        .unwrap_or_else(|_| vec![ca.to_string()])
        .into_iter()
        .map(|c| {
            if c.contains("-----BEGIN") {
                return c;
            }
            let compact: String = c.split_whitespace().collect();
            crate::encoding::base64_decode(compact.as_bytes())
                .and_then(|d| String::from_utf8(d).ok())
                .filter(|d| d.contains("-----BEGIN"))
                .unwrap_or(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn attributes_as_a_json_list_or_separated_by_semicolons() {
        let want = [
            "Cache-Control=max-age=90000,min-fresh=9000",
            "X-Amz-Server-Side-Encryption-Customer-Key=CuStoMerKey=",
        ];
        assert_eq!(
            super::attributes(&serde_json::to_string(&want).unwrap()),
            want
        );
        assert_eq!(super::attributes(&want.join(";")), want);
        assert_eq!(super::attributes(""), Vec::<String>::new());
    }

    #[test]
    fn ca_chains_in_pem_or_base64() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let b64 = crate::encoding::base64(pem.as_bytes());
        assert_eq!(super::ca_chain(""), Vec::<String>::new());
        assert_eq!(super::ca_chain(pem), [pem]);
        assert_eq!(
            super::ca_chain(&serde_json::to_string(&[pem, &b64]).unwrap()),
            [pem, pem]
        );
    }
}
