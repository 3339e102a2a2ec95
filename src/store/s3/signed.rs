//! The S3 requests `object_store` does not make, sent through its HTTP client and signer:
//! listing open multipart uploads, asking whether the bucket keeps versions, listing an
//! object's versions and deleting one version. Their XML answers are read with a few string
//! searches (the elements used have no attributes and do not nest).

use object_store::path::Path as ObjectPath;

use super::S3Store;
use super::options::endpoint_for;
use crate::encoding::aws_encode;
use crate::error::{Error, ErrorKind, Result};

/// Whether a bucket keeps the old versions of objects (S3's `GetBucketVersioning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Versioning was never enabled: a delete removes the object.
    Unversioned,
    /// Every write and delete keeps the object's earlier versions.
    Enabled,
    /// New writes keep no versions, but versions from before may be there.
    Suspended,
}

/// One version or delete marker of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ObjectVersion {
    pub key: String,
    pub version_id: String,
}

/// The text of XML character data with its entities (`&amp;`, `&lt;`, `&gt;`, `&quot;`,
/// `&apos;`, `&#N;`, `&#xN;`) decoded; an unknown or broken one stays as it is.
pub(super) fn decode_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&end| end <= 12).and_then(|end| {
            let c = match &rest[1..end] {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                e => e
                    .strip_prefix("#x")
                    .or_else(|| e.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| e.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(|n| n.ok())
                    .and_then(char::from_u32),
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The contents of every `<name>...</name>` element in `xml`, in order.
pub(super) fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The decoded text of the first `<name>` element in `xml`.
pub(super) fn tag(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).first().map(|t| decode_xml(t))
}

/// The bucket's versioning state from a `GetBucketVersioning` answer (no `Status`: never
/// enabled).
pub(super) fn parse_versioning(xml: &str) -> Result<Versioning> {
    match tag(xml, "Status").as_deref().map(str::trim) {
        None | Some("") => Ok(Versioning::Unversioned),
        Some("Enabled") => Ok(Versioning::Enabled),
        Some("Suspended") => Ok(Versioning::Suspended),
        Some(other) => Err(Error::new(
            ErrorKind::Other,
            format!("the S3 server gave an unknown versioning status {other:?}"),
        )),
    }
}

/// The versions and delete markers of exactly `key` in one `ListObjectVersions` page, and
/// the markers of the next page when the answer is truncated.
pub(super) fn parse_versions(
    xml: &str,
    key: &str,
) -> (Vec<ObjectVersion>, Option<(String, String)>) {
    let found = elements(xml, "Version")
        .into_iter()
        .chain(elements(xml, "DeleteMarker"))
        .filter_map(|v| {
            Some(ObjectVersion {
                key: tag(v, "Key")?,
                version_id: tag(v, "VersionId")?,
            })
        })
        .filter(|v| v.key == key)
        .collect();
    let next = (tag(xml, "IsTruncated").as_deref() == Some("true"))
        .then(|| {
            Some((
                tag(xml, "NextKeyMarker")?,
                tag(xml, "NextVersionIdMarker").unwrap_or_default(),
            ))
        })
        .flatten();
    (found, next)
}

/// An answer to a signed request: its HTTP status and body.
pub(super) struct Answer {
    pub status: http::StatusCode,
    pub body: String,
}

impl Answer {
    /// The S3 error code in the body (`AccessDenied`), or the HTTP status.
    pub fn error(&self) -> String {
        tag(&self.body, "Code").unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    /// The crate's kind for a failed answer.
    pub fn kind(&self) -> ErrorKind {
        match self.status.as_u16() {
            401 | 403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            _ => ErrorKind::Other,
        }
    }
}

impl S3Store {
    /// Sends a signed `method` request to the bucket (`key` `None`) or to one object, with
    /// `query`; fails only when no answer came back.
    pub(super) async fn signed(
        &self,
        method: http::Method,
        key: Option<&ObjectPath>,
        query: &[(&str, &str)],
    ) -> Result<Answer> {
        let o = &self.options;
        let fail = |what: String| {
            Error::new(
                ErrorKind::Connect,
                format!("cannot reach bucket {}: {what}", o.bucket),
            )
        };
        let mut url = match (o.endpoint.is_empty(), o.uri_style == "host") {
            (true, true) => format!("https://{}.s3.{}.amazonaws.com", o.bucket, self.region()),
            (true, false) => format!("https://s3.{}.amazonaws.com/{}", self.region(), o.bucket),
            (false, true) => endpoint_for(o),
            (false, false) => format!("{}/{}", endpoint_for(o), o.bucket),
        };
        url.push('/');
        if let Some(key) = key {
            let segments: Vec<String> = key.as_ref().split('/').map(aws_encode).collect();
            url.push_str(&segments.join("/"));
        }
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", aws_encode(k), aws_encode(v)))
            .collect();
        if !q.is_empty() {
            url.push('?');
            url.push_str(&q.join("&"));
        }
        let mut req = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| fail(format!("bad request ({e})")))?;
        let credential = object_store::aws::AwsCredential {
            key_id: o.access_key.clone(),
            secret_key: o.secret_key.clone(),
            token: None,
        };
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &self.region())
            .try_authorize(&mut req, None)
            .map_err(|e| fail(e.to_string()))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| fail(crate::error::chain(&e)))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .bytes()
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// The multipart uploads open for exactly `key` (`ListMultipartUploads`).
    pub(super) async fn open_uploads(&self, key: &ObjectPath) -> Result<Vec<String>> {
        let a = self
            .signed(
                http::Method::GET,
                None,
                &[("prefix", key.as_ref()), ("uploads", "")],
            )
            .await?;
        if !a.status.is_success() {
            return Err(Error::new(
                ErrorKind::Connect,
                format!(
                    "cannot list the open uploads in bucket {}: {}",
                    self.options.bucket,
                    a.error()
                ),
            ));
        }
        Ok(elements(&a.body, "Upload")
            .into_iter()
            .filter(|u| tag(u, "Key").as_deref() == Some(key.as_ref()))
            .filter_map(|u| tag(u, "UploadId"))
            .collect())
    }

    /// The bucket's versioning state (`GetBucketVersioning`).
    pub(super) async fn get_versioning(&self) -> Result<Versioning> {
        let a = self
            .signed(http::Method::GET, None, &[("versioning", "")])
            .await?;
        if !a.status.is_success() {
            return Err(Error::new(
                a.kind(),
                format!(
                    "cannot ask whether bucket {} keeps versions: {}",
                    self.options.bucket,
                    a.error()
                ),
            ));
        }
        parse_versioning(&a.body)
    }

    /// Every version and delete marker of exactly `key` (`ListObjectVersions`).
    pub(super) async fn versions_of(&self, key: &ObjectPath) -> Result<Vec<ObjectVersion>> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = vec![("versions", ""), ("prefix", key.as_ref())];
            if let Some((k, v)) = &marker {
                query.push(("key-marker", k));
                if !v.is_empty() {
                    query.push(("version-id-marker", v));
                }
            }
            let a = self.signed(http::Method::GET, None, &query).await?;
            if !a.status.is_success() {
                return Err(Error::new(
                    a.kind(),
                    format!(
                        "cannot list the versions of {key} in bucket {}: {}",
                        self.options.bucket,
                        a.error()
                    ),
                ));
            }
            let (found, next) = parse_versions(&a.body, key.as_ref());
            out.extend(found);
            match next {
                Some(n) if Some(&n) != marker.as_ref() => marker = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// Deletes one version (or delete marker) of `key`.
    pub(super) async fn delete_version(&self, key: &ObjectPath, version_id: &str) -> Result<()> {
        let a = self
            .signed(
                http::Method::DELETE,
                Some(key),
                &[("versionId", version_id)],
            )
            .await?;
        if a.status.is_success() || a.status == http::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(Error::new(a.kind(), a.error()))
    }

    pub(super) fn region(&self) -> String {
        if self.options.region.is_empty() {
            "us-east-1".into()
        } else {
            self.options.region.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded_once() {
        assert_eq!(
            decode_xml("a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos; &#233;&#xE9; &amp;lt;"),
            "a&b <c> \"d\" 'e' éé &lt;"
        );
        assert_eq!(
            decode_xml("50% & more &bogus; &#xZZ; &"),
            "50% & more &bogus; &#xZZ; &"
        );
    }

    #[test]
    fn versioning_states() {
        let ns = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
        assert_eq!(
            parse_versioning(&format!(
                r#"{ns}<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>"#
            ))
            .unwrap(),
            Versioning::Unversioned
        );
        for (s, v) in [
            ("Enabled", Versioning::Enabled),
            ("Suspended", Versioning::Suspended),
        ] {
            let xml = format!(
                r#"{ns}<VersioningConfiguration xmlns="x"><Status>{s}</Status></VersioningConfiguration>"#
            );
            assert_eq!(parse_versioning(&xml).unwrap(), v);
        }
    }

    #[test]
    fn only_the_versions_of_exactly_the_key_are_taken() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Prefix>p/a&amp;b</Prefix><KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker>
<NextKeyMarker>p/a&amp;b.sha</NextKeyMarker><NextVersionIdMarker>v9</NextVersionIdMarker>
<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<DeleteMarker><Key>p/a&amp;b</Key><VersionId>v3</VersionId><IsLatest>true</IsLatest></DeleteMarker>
<Version><Key>p/a&amp;b</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest><Size>1</Size></Version>
<Version><Key>p/a&amp;b</Key><VersionId>null</VersionId><IsLatest>false</IsLatest></Version>
<Version><Key>p/a&amp;b.sha</Key><VersionId>v9</VersionId><IsLatest>true</IsLatest></Version>
</ListVersionsResult>"#;
        let (found, next) = parse_versions(xml, "p/a&b");
        let ids: Vec<&str> = found.iter().map(|v| v.version_id.as_str()).collect();
        assert_eq!(ids, ["v2", "null", "v3"]);
        assert_eq!(next, Some(("p/a&b.sha".into(), "v9".into())));
        let (_, next) = parse_versions(
            &xml.replace(">true</IsTruncated>", ">false</IsTruncated>"),
            "p/a&b",
        );
        assert_eq!(next, None);
    }

    #[test]
    fn keys_are_encoded_as_sigv4_signs_them() {
        assert_eq!(aws_encode("bäck up~%?#+"), "b%C3%A4ck%20up~%25%3F%23%2B");
    }
}
