//! The settings the s3-integrator publishes, their validation, and how the relation's `path`
//! becomes the key prefix in the bucket.

use super::attributes::RequestAttributes;
use crate::error::{Error, Result};

/// Connection settings, as the s3-integrator charm publishes them.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (empty: AWS).
    pub endpoint: String,
    /// Region (empty: `us-east-1`).
    pub region: String,
    /// Key prefix inside the bucket.
    pub path: String,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// `path` or `host` addressing.
    pub uri_style: String,
    /// PEM CA certificates to trust for this endpoint.
    pub ca_chain: Vec<String>,
    /// Storage class for uploads (unused by most S3-compatible servers).
    pub storage_class: String,
    /// Extra request headers, `Header=value` each (the relation's `attributes`): server-side
    /// encryption (SSE-C, SSE-KMS, SSE-S3) and object headers. See
    /// [`S3Options::validate`] for those taken.
    pub attributes: Vec<String>,
}

impl S3Options {
    /// The settings a usable bucket needs that are empty, by their relation names.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("bucket", &self.bucket),
            ("access-key", &self.access_key),
            ("secret-key", &self.secret_key),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k)
        .collect()
    }

    /// Checks the settings that would make requests fail or go somewhere else than meant: an
    /// endpoint that is not a bare `http(s)://host[:port]` URL, host-style addressing of an IP
    /// address, an `s3-uri-style` other than `path` or `host`, a bucket name S3 does not
    /// allow, control characters in any setting, and `attributes` this store would not send
    /// (any header but the server-side encryption ones, `Cache-Control`,
    /// `Content-Disposition`, `Content-Language`, `Content-Type`, `x-amz-storage-class` and
    /// `x-amz-meta-*`), so no encryption asked for is left out unnoticed.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`], saying which setting is wrong and what to set on
    /// the s3-integrator (never showing a credential).
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("endpoint", &self.endpoint),
            ("region", &self.region),
            ("bucket", &self.bucket),
            ("path", &self.path),
            ("storage-class", &self.storage_class),
            ("s3-uri-style", &self.uri_style),
        ] {
            if value.chars().any(char::is_control) {
                return Err(bad(
                    name,
                    format!("{value:?} holds a control character (a line break or tab)"),
                    &format!("{name}=<the value without it>"),
                ));
            }
        }
        for (name, value) in [
            ("access-key", &self.access_key),
            ("secret-key", &self.secret_key),
        ] {
            if value.chars().any(char::is_control) {
                return Err(Error::invalid(format!(
                    "the s3-parameters {name} holds a control character (a line break or tab): \
                     give the s3-integrator the credentials again, without it"
                )));
            }
        }
        if !matches!(self.uri_style.as_str(), "" | "path" | "host") {
            return Err(bad(
                "s3-uri-style",
                format!("{:?} is neither path nor host", self.uri_style),
                "s3-uri-style=path",
            ));
        }
        if let Some(why) = bucket_problem(&self.bucket) {
            return Err(bad(
                "bucket",
                format!("{:?} is not a valid S3 bucket name: {why}", self.bucket),
                "bucket=<3 to 63 of a-z, 0-9, '.' and '-'>",
            ));
        }
        if self.region.contains([' ', '/']) {
            return Err(bad(
                "region",
                format!("{:?} holds a space or a slash", self.region),
                "region=us-east-1",
            ));
        }
        self.validate_endpoint()?;
        self.request_attributes().map(drop)
    }

    /// The `attributes`, parsed; a storage class in them must agree with `storage-class`.
    pub(super) fn request_attributes(&self) -> Result<RequestAttributes> {
        let a = RequestAttributes::parse(&self.attributes)?;
        let class = self.storage_class.trim();
        if let Some(other) = &a.storage_class
            && !class.is_empty()
            && other != class
        {
            return Err(bad(
                "storage-class",
                format!("{class:?} differs from x-amz-storage-class {other:?} in attributes"),
                "storage-class=<one of them> attributes=<the others>",
            ));
        }
        Ok(a)
    }

    fn validate_endpoint(&self) -> Result<()> {
        let endpoint = self.endpoint.as_str();
        if endpoint.is_empty() {
            return Ok(());
        }
        let example = |host: &str| format!("endpoint=https://{host}");
        let Some((scheme, rest)) = endpoint.split_once("://") else {
            return Err(bad(
                "endpoint",
                format!("{endpoint:?} has no scheme"),
                &example(endpoint.trim_end_matches('/')),
            ));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(bad(
                "endpoint",
                format!("{endpoint:?} is not an http:// or https:// URL"),
                &example(rest.trim_end_matches('/')),
            ));
        }
        let host_part = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host_part.contains('@') {
            // Never echoed: it may hold a password.
            return Err(bad(
                "endpoint",
                "holds a user name or password".into(),
                "endpoint=https://<host>[:<port>] (credentials go in access-key and secret-key)",
            ));
        }
        let url = reqwest::Url::parse(endpoint).map_err(|e| {
            bad(
                "endpoint",
                format!("{endpoint:?} is not a valid URL ({e})"),
                &example("<host>[:<port>]"),
            )
        })?;
        let Some(host) = url.host_str() else {
            return Err(bad(
                "endpoint",
                format!("{endpoint:?} names no host"),
                &example("<host>[:<port>]"),
            ));
        };
        let bare = format!(
            "{}{}",
            host,
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "endpoint",
                format!(
                    "{endpoint:?} has a path or query after the host; the bucket and the path \
                     in it are separate settings"
                ),
                &format!("endpoint={scheme}://{bare}"),
            ));
        }
        if self.uri_style == "host" && url.domain().is_none() {
            return Err(bad(
                "s3-uri-style",
                format!(
                    "host-style addressing puts the bucket in the host name, which the IP \
                     address in endpoint {endpoint:?} cannot take"
                ),
                "s3-uri-style=path",
            ));
        }
        Ok(())
    }

    /// The key prefix in the bucket that the relation's `path` stands for, with no leading or
    /// trailing `/`: what `S3Store` writes under and lists.
    ///
    /// Segments are kept as typed (`~`, `%`, `?`, `#`, spaces and non-ASCII included), so other
    /// S3 tools see the same keys. What a key cannot hold is made consistent: empty segments
    /// (from `//` or a leading or trailing `/`) are dropped, and a `.` or `..` segment is
    /// written as `%2E` or `%2E%2E` (as `object_store` writes them, so no client resolves them
    /// as relative paths).
    pub fn key_prefix(&self) -> String {
        normalize_key(&self.path)
    }
}

/// `key` with empty segments dropped and `.` and `..` segments written as `%2E` and `%2E%2E`
/// (see [`S3Options::key_prefix`]).
pub(super) fn normalize_key(key: &str) -> String {
    key.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "." => "%2E",
            ".." => "%2E%2E",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An [`crate::ErrorKind::InvalidInput`] error for relation setting `name`: `what` is wrong
/// with it, `fix` is what to set (`name=value`) with `juju config s3-integrator`.
fn bad(name: &str, what: String, fix: &str) -> Error {
    Error::invalid(format!(
        "the s3-parameters {name} {what}: set it with `juju config s3-integrator {fix}`"
    ))
}

/// Why `name` is not a bucket name S3 allows (general-purpose bucket rules), if it is not.
fn bucket_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        // Reported as missing.
        return None;
    }
    if !(3..=63).contains(&name.len()) {
        return Some("it must be 3 to 63 characters long");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Some(match c {
            '/' => "it holds a slash (the path in the bucket is the separate path setting)",
            ' ' => "it holds a space",
            c if c.is_ascii_uppercase() => "it holds an uppercase letter",
            _ => "only lowercase letters, digits, '.' and '-' are allowed",
        });
    }
    let first_last = [name.as_bytes()[0], name.as_bytes()[name.len() - 1]];
    if first_last.iter().any(|b| !b.is_ascii_alphanumeric()) {
        return Some("it must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Some("it holds two adjacent dots");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("it is formatted as an IP address");
    }
    None
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret key.
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path", &self.path)
            .field("uri_style", &self.uri_style)
            .finish_non_exhaustive()
    }
}

/// The endpoint URL to send requests to: with host-style addressing the bucket is part of the
/// host name (`https://<bucket>.<endpoint host>`), as s3-integrator's `endpoint` never has it.
pub(super) fn endpoint_for(options: &S3Options) -> String {
    let endpoint = options.endpoint.trim_end_matches('/');
    if options.uri_style != "host" {
        return endpoint.to_string();
    }
    match endpoint.split_once("://") {
        Some((scheme, host)) if !host.starts_with(&format!("{}.", options.bucket)) => {
            format!("{scheme}://{}.{host}", options.bucket)
        }
        _ => endpoint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_style_puts_the_bucket_in_the_host() {
        let mut o = S3Options {
            bucket: "b".into(),
            endpoint: "https://s3.example.com:9000/".into(),
            uri_style: "host".into(),
            ..Default::default()
        };
        assert_eq!(endpoint_for(&o), "https://b.s3.example.com:9000");
        o.endpoint = "https://b.s3.example.com".into();
        assert_eq!(endpoint_for(&o), "https://b.s3.example.com");
        o.uri_style = "path".into();
        assert_eq!(endpoint_for(&o), "https://b.s3.example.com");
    }

    fn valid() -> S3Options {
        S3Options {
            bucket: "backups".into(),
            endpoint: "https://s3.example.com:9000".into(),
            access_key: "k".into(),
            secret_key: "s".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_message_says_what_to_set() {
        let mut o = valid();
        o.endpoint = "s3.example.com:9000".into();
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "the s3-parameters endpoint \"s3.example.com:9000\" has no scheme: set it with \
             `juju config s3-integrator endpoint=https://s3.example.com:9000`"
        );
        o.endpoint = "http://s3.example.com:9000/foo".into();
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .ends_with("`juju config s3-integrator endpoint=http://s3.example.com:9000`")
        );
        o.endpoint = "https://user:hunter2@s3.example.com".into();
        assert!(!o.validate().unwrap_err().to_string().contains("hunter2"));
    }

    #[test]
    fn good_settings_pass() {
        let mut o = valid();
        o.validate().unwrap();
        for endpoint in [
            "",
            "http://127.0.0.1:9000/",
            "https://[::1]:9000",
            "HTTPS://S3.X",
        ] {
            o.endpoint = endpoint.into();
            o.validate().unwrap();
        }
        o.uri_style = "host".into();
        o.endpoint = "https://s3.example.com".into();
        o.validate().unwrap();
        o.bucket = "my.backups-1".into();
        o.path = "/bäck up/~x/%/?#/".into();
        o.validate().unwrap();
    }

    #[test]
    fn a_secret_with_a_control_character_is_refused_without_showing_it() {
        let mut o = valid();
        o.secret_key = "hunter2\n".into();
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("secret-key") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn paths_become_one_consistent_prefix() {
        for (path, prefix) in [
            ("", ""),
            ("/", ""),
            ("/unit-tests/", "unit-tests"),
            ("a//b", "a/b"),
            ("a/./b/../c", "a/%2E/b/%2E%2E/c"),
            ("bäck/~me/%41?#x y", "bäck/~me/%41?#x y"),
            ("..a/.b./...", "..a/.b./..."),
        ] {
            let o = S3Options {
                path: path.into(),
                ..Default::default()
            };
            assert_eq!(o.key_prefix(), prefix, "{path:?}");
        }
    }
}
