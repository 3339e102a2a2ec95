//! Small text encodings: standard base64 (for bytes that are not UTF-8) and percent-encoding
//! (URI query values, attribute names in PAX keys).

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, padded.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 back to bytes (`None` for a character outside the alphabet).
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text.iter().filter(|&&c| c != b'=') {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `%XX` for every byte but ASCII letters, digits, `.`, `-` and `_`.
pub fn percent_encode(s: &str) -> String {
    percent_encode_keeping(s, b".-_")
}

/// `%XX` for every byte but `A-Z a-z 0-9 - . _ ~`, as S3 (SigV4) request paths and queries
/// are signed.
pub fn aws_encode(s: &str) -> String {
    percent_encode_keeping(s, b"-._~")
}

/// `%XX` for every byte but ASCII letters, digits and those in `keep`.
fn percent_encode_keeping(s: &str, keep: &[u8]) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `%XX` sequences back to bytes (a `%` not followed by two hex digits stays as it is);
/// bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for v in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"\x00\xff\n=",
            b"hello world\n",
        ] {
            assert_eq!(base64_decode(base64(v).as_bytes()).unwrap(), v);
        }
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"\xff\xfe"), "//4=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn percent_encoding_round_trips() {
        assert_eq!(percent_decode(&percent_encode("user.a b=%")), "user.a b=%");
        assert_eq!(percent_decode("%2Fetc%2Fca%20x.pem"), "/etc/ca x.pem");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
