//! The wire format of peer requests: `{base}{group}/{key}` (`GET`, `PUT`, `DELETE`) and
//! `{base}{group}` (`POST` a batch remove, `DELETE` a purge), both percent-encoded.

use std::time::Duration;

use bytes::Bytes;
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
/// `x-alo-error` of a 413: a set's value is larger than the group caches.
pub const TOO_LARGE: &str = "too-large";

/// How long a value stays fresh, in whole milliseconds: on a `200`, the time the answering node
/// has left on it (absent when the value does not expire); on a `PUT` to a node's client API,
/// the time to live asked for (absent for the group's default). Remaining time, not an instant,
/// so that clock skew between nodes cannot keep a value alive.
pub const TTL_HEADER: &str = "x-alo-ttl-ms";
/// On a `200`: the value has expired and is served under a stale window, `if-error` or
/// `while-revalidate`. It may not be kept.
pub const STALE_HEADER: &str = "x-alo-stale";

/// The query parameter of a peer's `PUT` that carries the time to live, in whole milliseconds.
pub const TTL_QUERY: &str = "ttl-ms";

/// The time to live of a peer's `PUT`, from its query: `Ok(None)` without one.
pub(crate) fn ttl_from_query(query: Option<&str>) -> Result<Option<Duration>, &'static str> {
    let Some(query) = query else { return Ok(None) };
    let mut ttl = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((TTL_QUERY, value)) if ttl.is_none() => {
                ttl = Some(
                    parse_ttl(value.as_bytes())
                        .ok_or("ttl-ms must be a whole number of milliseconds, at least 1")?,
                );
            }
            _ => return Err("the only query parameter is one ttl-ms"),
        }
    }
    Ok(ttl)
}

/// A time to live from its header: whole milliseconds, at least 1.
pub(crate) fn parse_ttl(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = text.parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The path of a group's batch remove and purge: `{base}{group}`.
pub(crate) fn group_path(base: &str, group: &str) -> String {
    let mut path = String::with_capacity(base.len() + group.len());
    path.push_str(base);
    path.extend(utf8_percent_encode(group, COMPONENT));
    path
}

/// Splits and decodes `{base}{group}`.
pub(crate) fn parse_group(base: &str, path: &str) -> Result<String, PathError> {
    let rest = path.strip_prefix(base).ok_or(PathError::Malformed(
        "the path does not start with the base path",
    ))?;
    if rest.is_empty() || rest.contains('/') {
        return Err(PathError::Malformed("expected {group}"));
    }
    String::from_utf8(decode(rest)?).map_err(|_| PathError::Malformed("the group is not UTF-8"))
}

/// The body of a batch remove: each key percent-encoded, one per line.
pub(crate) fn encode_keys(keys: &[Bytes]) -> Bytes {
    let mut body = String::new();
    for key in keys {
        body.extend(percent_encoding::percent_encode(key, COMPONENT));
        body.push('\n');
    }
    Bytes::from(body)
}

/// The keys of a batch remove's body; an empty line or a bad escape refuses the whole batch.
pub(crate) fn decode_keys(body: &[u8]) -> Result<Vec<Bytes>, PathError> {
    let text = std::str::from_utf8(body).map_err(|_| PathError::BadEncoding)?;
    text.lines()
        .map(|line| match line {
            "" => Err(PathError::Malformed("an empty key")),
            line => decode(line).map(Bytes::from),
        })
        .collect()
}

/// The query of a batch get: `POST {base}{group}?get` with the keys in the body, as a batch
/// remove has them.
pub(crate) const BATCH_QUERY: &str = "get";

/// Whether a request of `method` with `query` is a batch get.
pub(crate) fn is_batch_get(method: &str, query: Option<&str>) -> bool {
    method == "POST" && query == Some(BATCH_QUERY)
}

/// Whether a request of `method` to `path` (and query) changes what a node holds: a `PUT`, a
/// `DELETE`, or a `POST` other than a batch get. Such a request must apply once (see
/// `PeerSecrets`).
pub(crate) fn changes_state(method: &str, path: &str) -> bool {
    let query = path.split_once('?').map(|(_, query)| query);
    !matches!(method, "GET" | "HEAD") && !is_batch_get(method, query)
}

/// The path and query of a batch get of `group`'s keys.
pub(crate) fn batch_path(base: &str, group: &str) -> String {
    let mut path = group_path(base, group);
    path.push('?');
    path.push_str(BATCH_QUERY);
    path
}

/// What a frame of a batch get's answer says besides its status: the fields a single answer
/// carries in headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// Nothing: a `200` whose value does not expire.
    None,
    /// A `200`'s `x-alo-ttl-ms`.
    Ttl(&'a [u8]),
    /// A `200`'s `x-alo-stale`.
    Stale(&'a [u8]),
    /// Any other status's `x-alo-error`.
    Code(&'a [u8]),
}

/// The status of a frame whose key was not ready when the batch was answered: the owner is
/// loading it; ask for it alone, which joins that load.
pub(crate) const PENDING: u16 = 202;

/// Appends one frame of a batch get's answer: `{status} {token} {length}\n` and the body.
pub(crate) fn push_frame(out: &mut Vec<u8>, status: u16, token: Token<'_>, body: &[u8]) {
    use std::io::Write as _;
    let (prefix, field): (&[u8], &[u8]) = match token {
        Token::None => (b"", b"-"),
        Token::Ttl(ms) => (b"ttl-ms=", ms),
        Token::Stale(why) => (b"stale=", why),
        Token::Code(code) => (b"", code),
    };
    let _ = write!(out, "{status} ");
    out.extend_from_slice(prefix);
    out.extend_from_slice(field);
    let _ = writeln!(out, " {}", body.len());
    out.extend_from_slice(body);
}

/// The frames of a batch get's answer, in the order of its keys; `None` at the first byte that
/// does not follow the format.
pub(crate) fn frames(body: &Bytes) -> Option<Vec<(u16, Token<'_>, Bytes)>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let head_len = body[at..].iter().position(|&b| b == b'\n')?;
        let head = &body[at..at + head_len];
        let mut fields = head.split(|&b| b == b' ');
        let (status, token, len) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || status.len() != 3 {
            return None;
        }
        let status = std::str::from_utf8(status).ok()?.parse().ok()?;
        let len: usize = std::str::from_utf8(len).ok()?.parse().ok()?;
        let token = match token {
            b"-" => Token::None,
            _ if token.starts_with(b"ttl-ms=") => Token::Ttl(&token[7..]),
            _ if token.starts_with(b"stale=") => Token::Stale(&token[6..]),
            _ => Token::Code(token),
        };
        let start = at + head_len + 1;
        let end = start.checked_add(len).filter(|&end| end <= body.len())?;
        frames.push((status, token, body.slice(start..end)));
        at = end;
    }
    Some(frames)
}

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

    #[test]
    fn group_paths_round_trip_and_refuse_keys() {
        let p = group_path("/_alo/", "grp one");
        assert_eq!(parse_group("/_alo/", &p), Ok("grp one".to_string()));
        assert!(parse_group("/_alo/", "/_alo/").is_err());
        assert!(parse_group("/_alo/", "/_alo/g/k").is_err());
    }

    #[test]
    fn batches_of_any_keys_round_trip() {
        let keys = [
            Bytes::from_static(b"plain"),
            Bytes::from_static(b"line\nbreak"),
            Bytes::from_static(b"\xff\x00"),
        ];
        assert_eq!(decode_keys(&encode_keys(&keys)), Ok(keys.to_vec()));
        assert!(decode_keys(b"a\n\nb\n").is_err(), "an empty key");
        assert!(decode_keys(b"a%zz\n").is_err());
    }

    #[test]
    fn frames_round_trip_and_refuse_what_does_not_parse() {
        let mut body = Vec::new();
        push_frame(&mut body, 200, Token::Ttl(b"1500"), b"a value\nwith a line");
        push_frame(&mut body, 200, Token::None, b"");
        push_frame(&mut body, 200, Token::Stale(b"if-error"), b"old");
        push_frame(
            &mut body,
            404,
            Token::Code(b"not-found"),
            b"key not found\n",
        );
        push_frame(&mut body, PENDING, Token::None, b"");
        let body = Bytes::from(body);
        let want = vec![
            (
                200,
                Token::Ttl(b"1500"),
                Bytes::from_static(b"a value\nwith a line"),
            ),
            (200, Token::None, Bytes::new()),
            (200, Token::Stale(b"if-error"), Bytes::from_static(b"old")),
            (
                404,
                Token::Code(b"not-found"),
                Bytes::from_static(b"key not found\n"),
            ),
            (PENDING, Token::None, Bytes::new()),
        ];
        assert_eq!(frames(&body), Some(want));
        for bad in [
            &b"200 - 5\nabc"[..],
            b"200 - 3",
            b"200 -\nabc",
            b"2000 - 0\n",
            b"200 - 0 x\n",
            b"200 - -1\n",
            b"200 - 99999999999999999999999\n",
        ] {
            assert_eq!(frames(&Bytes::from_static(bad)), None, "{bad:?}");
        }
        assert_eq!(frames(&Bytes::new()), Some(vec![]));
    }

    #[test]
    fn ttls_are_positive_whole_milliseconds() {
        assert_eq!(parse_ttl(b"1500"), Some(Duration::from_millis(1500)));
        for bad in [
            &b""[..],
            b"0",
            b"-1",
            b"1.5",
            b" 1",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad:?}");
        }
    }
}
