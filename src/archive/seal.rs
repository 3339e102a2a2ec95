//! age encryption of archives (age-encryption.org/v1, X25519 recipients), in the same pass as
//! compression and hashing: the writer encrypts the compressed stream before it is hashed, so
//! the recorded sha256 is that of the stored bytes; the reader decrypts what it reads. Only
//! public keys are needed to write, so a unit that backs up cannot read its earlier backups.
//!
//! What `age -d -i key.txt` and `age -r age1...` read and write, byte for byte in format.
//!
//! Built with the `encryption` feature (the `age` crate). Without it no recipient or identity
//! can be parsed, so nothing is ever written in plaintext in place of an encrypted archive,
//! and an encrypted archive is refused with what to turn on.

use std::io::{self, BufRead, Read, Write};
#[cfg(feature = "encryption")]
use std::str::FromStr;
use std::sync::Arc;

#[cfg(feature = "encryption")]
use crate::error::ErrorKind;
use crate::error::{Error, Result};

/// How every age file starts.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

/// The file-name suffix of encrypted archives.
pub const AGE_SUFFIX: &str = ".age";

/// What a build without the `encryption` feature says when asked to encrypt or decrypt.
#[cfg(not(feature = "encryption"))]
const NOT_BUILT: &str = "this program was built without the encryption feature (the age crate), which age encryption needs";

/// Public keys to encrypt to (`age1...`): any one of their identities decrypts.
#[cfg(feature = "encryption")]
#[derive(Clone)]
pub struct Recipients(Arc<Vec<(String, age::x25519::Recipient)>>);

/// Public keys to encrypt to (`age1...`); none can be parsed without the `encryption` feature.
#[cfg(not(feature = "encryption"))]
#[derive(Clone)]
pub struct Recipients(Arc<Vec<(String, ())>>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys()).finish()
    }
}

impl PartialEq for Recipients {
    fn eq(&self, other: &Self) -> bool {
        self.keys() == other.keys()
    }
}

impl Eq for Recipients {}

impl Recipients {
    /// Parses space-separated `age1...` keys; `None` for none.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming the first word that is not an age X25519 recipient.
    pub fn parse(text: &str) -> Result<Option<Self>> {
        #[cfg(not(feature = "encryption"))]
        if !text.trim().is_empty() {
            return Err(Error::invalid(NOT_BUILT));
        }
        #[cfg_attr(not(feature = "encryption"), allow(unused_mut))]
        let mut out = Vec::new();
        #[cfg(feature = "encryption")]
        for word in text.split_whitespace() {
            let r = age::x25519::Recipient::from_str(word).map_err(|why| {
                Error::invalid(format!(
                    "{word:?} is not an age X25519 recipient ({why}): give public keys as age-keygen prints them (age1...)"
                ))
            })?;
            if !out.iter().any(|(k, _)| k == word) {
                out.push((word.to_string(), r));
            }
        }
        Ok((!out.is_empty()).then(|| Recipients(Arc::new(out))))
    }

    /// The keys, as given.
    pub fn keys(&self) -> Vec<String> {
        self.0.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// Secret keys to decrypt with (`AGE-SECRET-KEY-1...`). Never printed.
#[cfg(feature = "encryption")]
#[derive(Clone)]
pub struct Identities(Arc<Vec<age::x25519::Identity>>);

/// Secret keys to decrypt with; none can be parsed without the `encryption` feature.
#[cfg(not(feature = "encryption"))]
#[derive(Clone)]
pub struct Identities(Arc<Vec<()>>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.0.len())
    }
}

impl Identities {
    /// Parses an identity file's text: one `AGE-SECRET-KEY-1...` per line, `#` comments and
    /// blank lines ignored (what `age-keygen` writes).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for a line that is not an identity (never quoting it) or
    /// when there is none.
    pub fn parse(text: &str) -> Result<Self> {
        #[cfg(not(feature = "encryption"))]
        {
            let _ = text;
            Err(Error::invalid(NOT_BUILT))
        }
        #[cfg(feature = "encryption")]
        Self::parse_keys(text)
    }

    #[cfg(feature = "encryption")]
    fn parse_keys(text: &str) -> Result<Self> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|why| {
                Error::invalid(format!(
                    "line {} of the identity is not an age X25519 secret key ({why}): give keys as age-keygen writes them (AGE-SECRET-KEY-1...)",
                    i + 1
                ))
            })?;
            out.push(id);
        }
        if out.is_empty() {
            return Err(Error::invalid(
                "the identity holds no AGE-SECRET-KEY-1... line",
            ));
        }
        Ok(Identities(Arc::new(out)))
    }

    /// The public keys of these identities.
    pub fn recipients(&self) -> Vec<String> {
        #[cfg(feature = "encryption")]
        return self.0.iter().map(|i| i.to_public().to_string()).collect();
        #[cfg(not(feature = "encryption"))]
        Vec::new()
    }
}

/// The compressed stream on its way out: encrypted when there are recipients.
pub(crate) enum Sealed<W: Write> {
    /// No encryption.
    Plain(W),
    /// age.
    #[cfg(feature = "encryption")]
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Sealed<W> {
    /// Starts writing to `out`, encrypted to `recipients` when given.
    pub(crate) fn new(out: W, recipients: Option<&Recipients>) -> io::Result<Self> {
        let Some(r) = recipients else {
            return Ok(Sealed::Plain(out));
        };
        #[cfg(not(feature = "encryption"))]
        {
            let _ = r;
            Err(io::Error::other(NOT_BUILT))
        }
        #[cfg(feature = "encryption")]
        let encryptor =
            age::Encryptor::with_recipients(r.0.iter().map(|(_, k)| k as &dyn age::Recipient))
                .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?;
        #[cfg(feature = "encryption")]
        encryptor.wrap_output(out).map(Sealed::Age)
    }

    /// Ends the stream (age's last chunk) and returns the output.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            #[cfg(feature = "encryption")]
            Sealed::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(buf),
            #[cfg(feature = "encryption")]
            Sealed::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            #[cfg(feature = "encryption")]
            Sealed::Age(w) => w.flush(),
        }
    }
}

/// The plaintext of the age file `input`, decrypted with `identities`. Fails at once (having
/// read only the header) when no identity was given or none matches; damage later in the file
/// fails the read at the damaged chunk.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] without a matching identity; [`ErrorKind::Integrity`] for a
/// damaged header.
pub(crate) fn open<R: BufRead + Send + 'static>(
    input: R,
    identities: Option<&Identities>,
) -> Result<impl Read + Send + 'static> {
    let Some(ids) = identities else {
        return Err(Error::invalid(
            "the archive is encrypted with age and no identity was given to decrypt it",
        ));
    };
    #[cfg(not(feature = "encryption"))]
    {
        let _ = (input, ids);
        Err::<std::io::Empty, _>(Error::invalid(NOT_BUILT))
    }
    #[cfg(feature = "encryption")]
    let decryptor = age::Decryptor::new_buffered(input).map_err(decrypt_err)?;
    #[cfg(feature = "encryption")]
    decryptor
        .decrypt(ids.0.iter().map(|i| i as &dyn age::Identity))
        .map_err(decrypt_err)
}

#[cfg(feature = "encryption")]
fn decrypt_err(e: age::DecryptError) -> Error {
    match e {
        age::DecryptError::NoMatchingKeys => Error::invalid(
            "none of the identities given decrypts the archive: it is encrypted to other recipients; give the identity of one of them",
        ),
        age::DecryptError::Io(e) => {
            Error::new(ErrorKind::Integrity, "cannot read the encrypted archive").with_source(e)
        }
        other => Error::new(
            ErrorKind::Integrity,
            format!("the encrypted archive is damaged: {other}"),
        ),
    }
}

#[cfg(all(test, feature = "encryption"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_named_never_quoted_when_secret() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        let r = Recipients::parse(&format!(" {public}  {public} "))
            .unwrap()
            .unwrap();
        assert_eq!(r.keys(), vec![public.clone()]);
        assert!(Recipients::parse("").unwrap().is_none());
        let err = Recipients::parse(&format!("{public} age1nope")).unwrap_err();
        assert!(err.to_string().contains("age1nope"), "{err}");
        use age::secrecy::ExposeSecret;
        let secret = id.to_string().expose_secret().to_string();
        let ids = Identities::parse(&format!(
            "# created: now\n# public key: {public}\n{secret}\n"
        ))
        .unwrap();
        assert_eq!(ids.recipients(), [public]);
        let bad = format!("{}x", &secret[..secret.len() - 1]);
        let err = Identities::parse(&bad).unwrap_err();
        assert!(!err.to_string().contains(&bad), "{err}");
        assert!(!format!("{ids:?}").contains("AGE-SECRET"));
    }

    #[test]
    fn what_is_sealed_opens_with_either_identity_only() {
        let (a, b, c) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let r = Recipients::parse(&format!("{} {}", a.to_public(), b.to_public()))
            .unwrap()
            .unwrap();
        let mut w = Sealed::new(Vec::new(), Some(&r)).unwrap();
        w.write_all(&vec![7u8; 200_000]).unwrap();
        let sealed = w.finish().unwrap();
        assert!(sealed.starts_with(AGE_MAGIC));
        use age::secrecy::ExposeSecret;
        for id in [&a, &b] {
            let ids = Identities::parse(id.to_string().expose_secret()).unwrap();
            let mut out = Vec::new();
            open(io::Cursor::new(sealed.clone()), Some(&ids))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, vec![7u8; 200_000]);
        }
        let other = Identities::parse(c.to_string().expose_secret()).unwrap();
        let err = open(io::Cursor::new(sealed.clone()), Some(&other))
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let mut damaged = sealed.clone();
        let n = damaged.len();
        damaged[n - 10] ^= 1;
        let ids = Identities::parse(a.to_string().expose_secret()).unwrap();
        let mut out = Vec::new();
        assert!(
            open(io::Cursor::new(damaged), Some(&ids))
                .unwrap()
                .read_to_end(&mut out)
                .is_err()
        );
    }
}
