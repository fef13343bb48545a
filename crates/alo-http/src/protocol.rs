//! The wire format of peer requests: `GET {base}{group}/{key}`, both percent-encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is encoded, `/` included, so a key holding
/// any bytes survives the trip.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The header that tells a 404 for a key the getter does not have from one for an unknown
/// group, with the values below.
pub const ERROR_HEADER: &str = "x-alo-error";
/// `x-alo-error` of a 404 whose key the owner's getter does not have.
pub const NOT_FOUND: &str = "not-found";
/// `x-alo-error` of a 400 whose key the owner's getter refuses as invalid.
pub const INVALID_KEY: &str = "invalid-key";
/// `x-alo-error` of a 404 for a group the node does not have.
pub const UNKNOWN_GROUP: &str = "unknown-group";
/// `x-alo-error` of a 502 (the getter failed) or 500 (it panicked): the owner asked its origin
/// and got no value. The asking node returns the error and does not ask the origin again.
pub const LOAD_FAILED: &str = "load-failed";
/// `x-alo-error` of a 504: the owner's load passed its deadline and was dropped.
pub const LOAD_TIMEOUT: &str = "load-timeout";
/// `x-alo-error` of a 401: the node has peer secrets and the request proved none of them.
pub const UNAUTHORIZED: &str = "unauthorized";

/// The path of a request for `key` of `group`, under `base` (which ends in `/`).
pub(crate) fn path(base: &str, group: &str, key: &[u8]) -> String {
    let mut path = String::with_capacity(base.len() + group.len() + key.len() * 3 + 1);
    path.push_str(base);
    path.extend(utf8_percent_encode(group, COMPONENT));
    path.push('/');
    path.extend(percent_encoding::percent_encode(key, COMPONENT));
    path
}

/// Why a request path was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PathError {
    /// Not `{base}{group}/{key}`, or a component is empty, or the group is not UTF-8.
    Malformed(&'static str),
    /// A `%` not followed by two hex digits.
    BadEncoding,
}

/// Splits and decodes `{base}{group}/{key}`.
pub(crate) fn parse(base: &str, path: &str) -> Result<(String, Vec<u8>), PathError> {
    let rest = path.strip_prefix(base).ok_or(PathError::Malformed(
        "the path does not start with the base path",
    ))?;
    let (group, key) = rest
        .split_once('/')
        .ok_or(PathError::Malformed("expected {group}/{key}"))?;
    if group.is_empty() {
        return Err(PathError::Malformed("the group is empty"));
    }
    if key.is_empty() {
        return Err(PathError::Malformed("the key is empty"));
    }
    let group = decode(group)?;
    let group =
        String::from_utf8(group).map_err(|_| PathError::Malformed("the group is not UTF-8"))?;
    Ok((group, decode(key)?))
}

/// Strict percent-decoding: `percent_decode` passes malformed escapes through, which would let
/// two spellings name one key.
fn decode(component: &str) -> Result<Vec<u8>, PathError> {
    let bytes = component.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(PathError::BadEncoding);
            }
        }
    }
    Ok(percent_decode(bytes).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_round_trips() {
        let keys: [&[u8]; 5] = [
            b"plain",
            b"a/b c%d",
            b"\xff\x00\xfe",
            "ключ".as_bytes(),
            b"~-._",
        ];
        for key in keys {
            let p = path("/_alo/", "grp one", key);
            assert_eq!(
                parse("/_alo/", &p),
                Ok(("grp one".to_string(), key.to_vec()))
            );
        }
        assert_eq!(path("/_alo/", "g", b"a/b"), "/_alo/g/a%2Fb");
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert!(matches!(
            parse("/_alo/", "/other/g/k"),
            Err(PathError::Malformed(_))
        ));
        assert!(matches!(
            parse("/_alo/", "/_alo/g"),
            Err(PathError::Malformed(_))
        ));
        assert!(matches!(
            parse("/_alo/", "/_alo//k"),
            Err(PathError::Malformed(_))
        ));
        assert!(matches!(
            parse("/_alo/", "/_alo/g/"),
            Err(PathError::Malformed(_))
        ));
        assert!(matches!(
            parse("/_alo/", "/_alo/%FF/k"),
            Err(PathError::Malformed(_))
        ));
        assert_eq!(parse("/_alo/", "/_alo/g/%zz"), Err(PathError::BadEncoding));
        assert_eq!(parse("/_alo/", "/_alo/g/ab%4"), Err(PathError::BadEncoding));
    }
}
