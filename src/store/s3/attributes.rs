//! The relation's `attributes`: extra request headers the s3-integrator publishes, most often
//! the server-side encryption the bucket must apply (SSE-C, SSE-KMS, SSE-S3).
//!
//! Each item is `Header=value` (split at the first `=`; names in any case). The encryption
//! headers become `object_store`'s encryption settings, which send each one with the
//! requests S3 wants it on: SSE-C's key with every write *and* read of an object, SSE-KMS's
//! only with writes (S3 refuses a GET that carries them). `Cache-Control`,
//! `Content-Disposition`, `Content-Language`, `Content-Type`, `x-amz-storage-class` and
//! `x-amz-meta-*` are stored with every object written.
//!
//! Any other header is refused rather than left out: an encryption or retention header the
//! store did not send would leave objects unprotected with nobody told.

use md5::Digest;
use object_store::aws::AmazonS3Builder;
use object_store::{Attribute, Attributes};

use crate::error::{Error, Result};

/// Server-side encryption asked for by the attributes.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum ServerSide {
    /// `x-amz-server-side-encryption: AES256`: keys the server manages.
    S3,
    /// `aws:kms` (or `aws:kms:dsse` when `dual`), with the KMS key id if given.
    Kms { key_id: Option<String>, dual: bool },
    /// SSE-C: the customer's AES-256 key, base64 (sent with every request on the object).
    Customer { key_base64: String },
}

impl std::fmt::Debug for ServerSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the customer key.
        f.write_str(self.describe())
    }
}

impl ServerSide {
    /// What the operator would call it.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            ServerSide::S3 => "SSE-S3 (AES256)",
            ServerSide::Kms { dual: false, .. } => "SSE-KMS",
            ServerSide::Kms { dual: true, .. } => "DSSE-KMS",
            ServerSide::Customer { .. } => "SSE-C",
        }
    }
}

/// The attributes, parsed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RequestAttributes {
    /// The server-side encryption to ask for.
    pub server_side: Option<ServerSide>,
    /// `x-amz-server-side-encryption-bucket-key-enabled`.
    pub bucket_key: Option<bool>,
    /// `x-amz-storage-class`, as the relation's `storage-class` would give it.
    pub storage_class: Option<String>,
    /// Stored with every object written: (attribute, value).
    pub object: Vec<(Attribute, String)>,
}

/// The headers that may be given, for the message refusing another.
const KNOWN: &str = "x-amz-server-side-encryption, x-amz-server-side-encryption-aws-kms-key-id, \
    x-amz-server-side-encryption-bucket-key-enabled, x-amz-server-side-encryption-customer-\
    algorithm, x-amz-server-side-encryption-customer-key, x-amz-server-side-encryption-customer-\
    key-md5, cache-control, content-disposition, content-language, content-type, \
    x-amz-storage-class and x-amz-meta-*";

/// An error about the attributes, saying what to set on the s3-integrator.
fn bad(what: String) -> Error {
    Error::invalid(format!(
        "the s3-parameters attributes {what}: set them with `juju config s3-integrator \
         attributes=<Header=value,...>`"
    ))
}

impl RequestAttributes {
    /// Parses `Header=value` items. Empty items are skipped.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for an item without `=`, a header not in the list
    /// above, a header given twice, an invalid value, SSE-C together with another kind, or a
    /// customer key that is not 32 bytes of base64 or does not match its MD5. No message
    /// shows a key.
    pub(super) fn parse(items: &[String]) -> Result<RequestAttributes> {
        let mut seen: Vec<String> = Vec::new();
        let mut sse: Option<String> = None;
        let mut kms_key: Option<String> = None;
        let mut algorithm: Option<String> = None;
        let mut customer_key: Option<String> = None;
        let mut customer_md5: Option<String> = None;
        let mut out = RequestAttributes::default();
        for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
            let Some((name, value)) = item.split_once('=') else {
                let shown: String = item.chars().take(40).collect();
                return Err(bad(format!("item {shown:?} is not Header=value")));
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            if seen.contains(&name) {
                return Err(bad(format!("give {name} twice")));
            }
            seen.push(name.clone());
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err(bad(format!(
                    "give {name} an empty value or one with a control character"
                )));
            }
            match name.as_str() {
                "x-amz-server-side-encryption" => sse = Some(value),
                "x-amz-server-side-encryption-aws-kms-key-id" => kms_key = Some(value),
                "x-amz-server-side-encryption-bucket-key-enabled" => {
                    out.bucket_key = Some(match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(format!("give {name} {value:?}, not true or false"))),
                    })
                }
                "x-amz-server-side-encryption-customer-algorithm" => algorithm = Some(value),
                "x-amz-server-side-encryption-customer-key" => customer_key = Some(value),
                "x-amz-server-side-encryption-customer-key-md5" => customer_md5 = Some(value),
                "cache-control" => out.object.push((Attribute::CacheControl, value)),
                "content-disposition" => out.object.push((Attribute::ContentDisposition, value)),
                "content-language" => out.object.push((Attribute::ContentLanguage, value)),
                "content-type" => out.object.push((Attribute::ContentType, value)),
                "x-amz-storage-class" => out.storage_class = Some(value),
                n if n.starts_with("x-amz-meta-") && n.len() > "x-amz-meta-".len() => {
                    let key = n["x-amz-meta-".len()..].to_string();
                    out.object.push((Attribute::Metadata(key.into()), value));
                }
                n => {
                    let shown: String = n.chars().take(60).collect();
                    return Err(bad(format!(
                        "name header {shown:?}, which charm-backup does not send (it sends \
                         {KNOWN}); remove it"
                    )));
                }
            }
        }
        let customer = algorithm.is_some() || customer_key.is_some() || customer_md5.is_some();
        if customer {
            if sse.is_some() || kms_key.is_some() || out.bucket_key.is_some() {
                return Err(bad(
                    "ask for SSE-C (customer key) and another server-side encryption at once"
                        .into(),
                ));
            }
            if let Some(a) = &algorithm
                && a != "AES256"
            {
                return Err(bad(format!(
                    "give x-amz-server-side-encryption-customer-algorithm {a:?}: S3 takes only \
                     AES256"
                )));
            }
            let Some(key) = customer_key else {
                return Err(bad(
                    "ask for SSE-C without x-amz-server-side-encryption-customer-key".into(),
                ));
            };
            let raw = crate::encoding::base64_decode(key.as_bytes())
                .filter(|k| k.len() == 32)
                .ok_or_else(|| {
                    bad(
                        "give an x-amz-server-side-encryption-customer-key that is not 32 \
                         bytes in base64 (make one with `openssl rand -base64 32`)"
                            .into(),
                    )
                })?;
            if let Some(md5) = customer_md5 {
                let want = crate::encoding::base64(&md5::Md5::digest(&raw));
                if md5 != want {
                    return Err(bad(
                        "give an x-amz-server-side-encryption-customer-key-md5 that is not the \
                         MD5 of the key (leave it out: it is computed)"
                            .into(),
                    ));
                }
            }
            out.server_side = Some(ServerSide::Customer { key_base64: key });
        } else if let Some(kind) = sse {
            out.server_side = Some(match kind.as_str() {
                "AES256" if kms_key.is_none() => ServerSide::S3,
                "aws:kms" => ServerSide::Kms {
                    key_id: kms_key,
                    dual: false,
                },
                "aws:kms:dsse" => ServerSide::Kms {
                    key_id: kms_key,
                    dual: true,
                },
                "AES256" => {
                    return Err(bad(
                        "give a KMS key id with x-amz-server-side-encryption AES256; set \
                         x-amz-server-side-encryption=aws:kms"
                            .into(),
                    ));
                }
                other => {
                    return Err(bad(format!(
                        "give x-amz-server-side-encryption {other:?}: it takes AES256, aws:kms \
                         or aws:kms:dsse"
                    )));
                }
            });
        } else if kms_key.is_some() {
            out.server_side = Some(ServerSide::Kms {
                key_id: kms_key,
                dual: false,
            });
        } else if out.bucket_key.is_some() {
            return Err(bad(
                "give x-amz-server-side-encryption-bucket-key-enabled without \
                 x-amz-server-side-encryption"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// The builder with the server-side encryption set.
    pub(super) fn configure(&self, b: AmazonS3Builder) -> AmazonS3Builder {
        let b = match &self.server_side {
            None => b,
            // The key's type is not public: it is named as `object_store` parses it.
            Some(ServerSide::S3) => match "aws_server_side_encryption".parse() {
                Ok(key) => b.with_config(key, "AES256"),
                Err(_) => unreachable!("object_store names aws_server_side_encryption"),
            },
            Some(ServerSide::Kms { key_id, dual }) => {
                let id = key_id.clone().unwrap_or_default();
                match dual {
                    false => b.with_sse_kms_encryption(id),
                    true => b.with_dsse_kms_encryption(id),
                }
            }
            Some(ServerSide::Customer { key_base64 }) => b.with_ssec_encryption(key_base64),
        };
        match self.bucket_key {
            Some(on) => b.with_bucket_key(on),
            None => b,
        }
    }

    /// The attributes stored with each object written.
    pub(super) fn object_attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        for (k, v) in &self.object {
            a.insert(k.clone(), v.clone().into());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[&str]) -> Result<RequestAttributes> {
        RequestAttributes::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn customer_keys_are_checked_and_never_shown() {
        let a = parse(&[
            "X-Amz-Server-Side-Encryption-Customer-Algorithm=AES256",
            &format!("x-amz-server-side-encryption-customer-key={KEY}"),
        ])
        .unwrap();
        assert_eq!(
            a.server_side,
            Some(ServerSide::Customer {
                key_base64: KEY.into()
            })
        );
        assert!(!format!("{a:?}").contains(KEY));
        let md5 = crate::encoding::base64(&md5::Md5::digest(b"0123456789abcdef0123456789abcdef"));
        parse(&[
            &format!("x-amz-server-side-encryption-customer-key={KEY}"),
            &format!("x-amz-server-side-encryption-customer-key-md5={md5}"),
        ])
        .unwrap();
        for (items, says) in [
            (
                vec!["x-amz-server-side-encryption-customer-key=c2hvcnQ="],
                "not 32 bytes",
            ),
            (
                vec![
                    &format!("x-amz-server-side-encryption-customer-key={KEY}") as &str,
                    "x-amz-server-side-encryption-customer-key-md5=AAAA",
                ],
                "not the MD5",
            ),
            (
                vec!["x-amz-server-side-encryption-customer-algorithm=AES256"],
                "without x-amz-server-side-encryption-customer-key",
            ),
            (
                vec![
                    &format!("x-amz-server-side-encryption-customer-key={KEY}") as &str,
                    "x-amz-server-side-encryption=aws:kms",
                ],
                "at once",
            ),
        ] {
            let e = parse(&items).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains(KEY), "{e}");
            assert!(e.contains("juju config s3-integrator attributes="), "{e}");
        }
    }

    #[test]
    fn kms_and_s3_managed_keys() {
        let a = parse(&[
            "x-amz-server-side-encryption=aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id=arn:aws:kms:eu-west-1:1:key/k",
            "x-amz-server-side-encryption-bucket-key-enabled=true",
        ])
        .unwrap();
        assert_eq!(
            a.server_side,
            Some(ServerSide::Kms {
                key_id: Some("arn:aws:kms:eu-west-1:1:key/k".into()),
                dual: false
            })
        );
        assert_eq!(a.bucket_key, Some(true));
        assert_eq!(
            parse(&["x-amz-server-side-encryption=AES256"])
                .unwrap()
                .server_side,
            Some(ServerSide::S3)
        );
        let e = parse(&["x-amz-server-side-encryption=rot13"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AES256, aws:kms or aws:kms:dsse"), "{e}");
    }

    #[test]
    fn object_headers_are_kept_and_unknown_ones_refused() {
        let a = parse(&[
            "Cache-Control=max-age=90000,min-fresh=9000",
            "x-amz-meta-team=dba",
            "",
        ])
        .unwrap();
        assert_eq!(a.server_side, None);
        let attrs = a.object_attributes();
        assert_eq!(
            attrs.get(&Attribute::CacheControl).map(|v| v.as_ref()),
            Some("max-age=90000,min-fresh=9000")
        );
        assert_eq!(
            attrs
                .get(&Attribute::Metadata("team".into()))
                .map(|v| v.as_ref()),
            Some("dba")
        );
        for (item, says) in [
            ("x-amz-object-lock-mode=GOVERNANCE", "does not send"),
            ("x-amz-server-side-encryption-context=e30=", "does not send"),
            ("Cache-Control", "is not Header=value"),
            ("content-type=", "empty value"),
        ] {
            let e = parse(&[item]).unwrap_err().to_string();
            assert!(e.contains(says), "{item}: {e}");
        }
        let e = parse(&["content-type=a", "Content-Type=b"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
