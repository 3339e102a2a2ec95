//! TLS to the server as libpq does it: `sslmode` (`disable` to `verify-full`), `sslrootcert`,
//! `sslcert` and `sslkey` taken out of the connection string (the `postgres` crate knows
//! neither the verify modes nor the file settings), our sessions through rustls
//! (`tokio-postgres-rustls`), the tools through the same settings in their environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::encoding::percent_decode;
use crate::error::{Error, Result};

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// libpq's `sslmode`: `disable`, `allow`, `prefer` (the default), `require`, `verify-ca`
    /// or `verify-full`.
    pub mode: String,
    /// CA certificates the server's certificate must chain to (`sslrootcert`).
    pub root_cert: Option<PathBuf>,
    /// Client certificate (`sslcert`) and its key (`sslkey`).
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    pub key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: "prefer".into(),
            root_cert: None,
            cert: None,
            key: None,
        }
    }
}

const MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

impl TlsSettings {
    fn set(&mut self, key: &str, value: String) -> Result<bool> {
        match key {
            "sslmode" => {
                if !MODES.contains(&value.as_str()) {
                    return Err(Error::invalid(format!(
                        "postgresql-uri: sslmode {value:?} is not one of {}",
                        MODES.join(", ")
                    )));
                }
                self.mode = value;
            }
            "sslrootcert" => self.root_cert = Some(PathBuf::from(value)),
            "sslcert" => self.cert = Some(PathBuf::from(value)),
            "sslkey" => self.key = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether the session must be encrypted (the `postgres` crate's `require`).
    pub fn required(&self) -> bool {
        matches!(self.mode.as_str(), "require" | "verify-ca" | "verify-full")
    }

    /// Gives a client tool the same settings, through libpq's environment.
    pub fn apply_to(&self, c: &mut Command) {
        c.env("PGSSLMODE", &self.mode);
        for (var, value) in [
            ("PGSSLROOTCERT", &self.root_cert),
            ("PGSSLCERT", &self.cert),
            ("PGSSLKEY", &self.key),
        ] {
            match value {
                Some(p) => c.env(var, p),
                None => c.env_remove(var),
            };
        }
    }

    /// The rustls client for these settings: `verify-full` checks the chain and the host
    /// name, `verify-ca` (or any mode with `sslrootcert`, as libpq does) the chain, the
    /// others only encrypt.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when a verify mode has no `sslrootcert`, or a
    /// certificate or key file cannot be read.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid(format!("TLS setup failed: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match &self.root_cert {
            None if self.mode.starts_with("verify-") => {
                return Err(Error::invalid(format!(
                    "postgresql-uri: sslmode={} needs sslrootcert=<CA file> (the certificate of the CA that signed the server's)",
                    self.mode
                )));
            }
            None => Arc::new(Lenient {
                chain: None,
                provider,
            }),
            Some(file) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(file).map_err(|e| pem_error(file, e))? {
                    roots
                        .add(cert.map_err(|e| pem_error(file, e))?)
                        .map_err(|e| {
                            Error::invalid(format!("sslrootcert {}: {e}", file.display()))
                        })?;
                }
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| {
                            Error::invalid(format!("sslrootcert {}: {e}", file.display()))
                        })?;
                if self.mode == "verify-full" {
                    webpki
                } else {
                    Arc::new(Lenient {
                        chain: Some(webpki),
                        provider,
                    })
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| pem_error(cert, e))?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| pem_error(cert, e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
                builder
                    .with_client_auth_cert(certs, key_der)
                    .map_err(|e| Error::invalid(format!("sslcert {}: {e}", cert.display())))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(Error::invalid(
                "postgresql-uri: give sslcert and sslkey together",
            )),
        }
    }
}

fn pem_error(file: &Path, e: rustls::pki_types::pem::Error) -> Error {
    Error::invalid(format!("cannot read {}: {e}", file.display()))
}

/// Takes the TLS settings out of a libpq URI (`?sslmode=...&sslrootcert=...`) or `key=value`
/// string; returns the rest, for the `postgres` crate, and the settings.
///
/// # Errors
/// When `sslmode` is not one of libpq's, or a quoted value is not closed.
pub fn split_tls(conninfo: &str) -> Result<(String, TlsSettings)> {
    let mut tls = TlsSettings::default();
    let s = conninfo.trim();
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        let Some((base, query)) = s.split_once('?') else {
            return Ok((s.to_string(), tls));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !tls.set(&percent_decode(k), percent_decode(v))? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    let mut kept = Vec::new();
    for (k, v) in key_values(s)? {
        if !tls.set(&k, v.clone())? {
            kept.push(format!(
                "{k}='{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept.join(" "), tls))
}

/// The pairs of a `key=value` connection string, values unquoted as libpq does.
fn key_values(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(Error::invalid(format!(
                "postgresql-uri: {key:?} has no \"=value\""
            )));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => {
                        return Err(Error::invalid(format!(
                            "postgresql-uri: the value of {key} has no closing quote"
                        )));
                    }
                    Some('\\') => value.extend(it.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// libpq's checks of the server's certificate below `verify-full`: `verify-ca` (a chain to
/// `sslrootcert`, any host name) when `chain` is set, else none (`require` and `prefer`
/// without `sslrootcert`: encrypted only). The handshake's signatures are checked either way.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_come_out_of_uris_and_key_value_strings() {
        let (rest, tls) = split_tls(
            "postgresql://backup@db.example:5432/postgres?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://backup@db.example:5432/postgres?application_name=x"
        );
        assert_eq!(tls.mode, "verify-full");
        assert_eq!(tls.root_cert.as_deref(), Some(Path::new("/etc/ca x.pem")));

        let (rest, tls) = split_tls(
            "host=db port=5432 dbname='my db' sslmode=verify-ca sslrootcert='/a b/c\\'s.pem'",
        )
        .unwrap();
        assert_eq!(rest, "host='db' port='5432' dbname='my db'");
        assert_eq!(tls.mode, "verify-ca");
        assert_eq!(tls.root_cert.as_deref(), Some(Path::new("/a b/c's.pem")));

        assert_eq!(
            split_tls("postgresql://h/d").unwrap().1,
            TlsSettings::default()
        );
        assert!(split_tls("host=h sslmode=verify-everything").is_err());
        assert!(split_tls("host='open").is_err());
    }

    #[test]
    fn verify_modes_need_a_root_certificate() {
        let (_, tls) = split_tls("host=h sslmode=verify-full").unwrap();
        let e = tls.client_config().unwrap_err();
        assert!(e.to_string().contains("sslrootcert"), "{e}");
        let (_, tls) = split_tls("host=h sslmode=require").unwrap();
        assert!(tls.client_config().is_ok());
    }
}
