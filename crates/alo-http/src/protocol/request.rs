//! Requests: `{base}{group}/{key}` (`GET`, `HEAD`, `PUT`, `DELETE`), `{base}{group}` (`POST` a
//! batch get or remove, `DELETE` a purge) and `{base}` (`GET`, the probe), each component
//! percent-encoded; and the bodies and values they carry.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, utf8_percent_encode};

use super::{BATCH_QUERY, FILL_QUERY, PEEK_QUERY, TTL_QUERY};

/// Everything but RFC 3986's unreserved characters is encoded, `/` included, so a key holding
/// any bytes survives the trip.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The methods a node answers, for a `405`'s `allow`.
const ALLOWED: &str = "GET, HEAD, PUT, DELETE, POST";

/// One request between members: what the asking node encodes ([`method`](Request::method),
/// [`path`](Request::path)) and the answering node parses ([`parse`](Request::parse)). Keys of a
/// batch are in the body ([`encode_keys`], [`decode_keys`]); so is a set's value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request<'a> {
    /// `GET {base}`: is the node serving? Answered `200 ok` without touching a group.
    Probe,
    /// `GET {base}{group}/{key}` (or `HEAD`): the key's value.
    Get {
        /// The group.
        group: Cow<'a, str>,
        /// The key.
        key: Cow<'a, [u8]>,
    },
    /// `POST {base}{group}?get`: the values of the keys in the body, in frames.
    GetMany {
        /// The group.
        group: Cow<'a, str>,
    },
    /// `GET {base}{group}/{key}?peek`: the key's value if the node holds it, from its caches
    /// only (it never loads for a peek).
    Peek {
        /// The group.
        group: Cow<'a, str>,
        /// The key.
        key: Cow<'a, [u8]>,
    },
    /// `POST {base}{group}?peek`: peeks at the keys in the body, in frames.
    PeekMany {
        /// The group.
        group: Cow<'a, str>,
    },
    /// `POST {base}{group}?fill`: keep each value in the body (a key, its value and the time it
    /// has left, in frames) that the node does not hold yet: a leaving member's handover.
    Fill {
        /// The group.
        group: Cow<'a, str>,
    },
    /// `PUT {base}{group}/{key}[?ttl-ms=N]`: store the body as the key's value, for `ttl`
    /// (`None`: the group's default).
    Set {
        /// The group.
        group: Cow<'a, str>,
        /// The key.
        key: Cow<'a, [u8]>,
        /// The time to live, from the query.
        ttl: Option<Duration>,
    },
    /// `DELETE {base}{group}/{key}`: drop the key.
    Remove {
        /// The group.
        group: Cow<'a, str>,
        /// The key.
        key: Cow<'a, [u8]>,
    },
    /// `POST {base}{group}`: drop the keys in the body.
    RemoveMany {
        /// The group.
        group: Cow<'a, str>,
    },
    /// `DELETE {base}{group}`: drop every entry of the group.
    Purge {
        /// The group.
        group: Cow<'a, str>,
    },
}

/// Why a request was refused before any group was asked: its status and a short text, and for
/// a `405` the methods allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// `400`, `405` or `414`.
    pub status: StatusCode,
    /// A line for the client, ending with `\n`.
    pub text: Cow<'static, str>,
    /// The `allow` header of a `405`.
    pub allow: Option<&'static str>,
}

impl Refusal {
    /// The refusal as a response: its status, its text as `text/plain`, and for a `405` the
    /// methods allowed.
    pub fn response(&self) -> http::Response<http_body_util::Full<Bytes>> {
        let mut resp = super::text(self.status, self.text.clone());
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
        }
        resp
    }

    fn bad(text: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            text: text.into(),
            allow: None,
        }
    }

    fn key_too_long(max_key_bytes: usize, one_of_many: bool) -> Self {
        let which = if one_of_many { "a" } else { "the" };
        Refusal {
            status: StatusCode::URI_TOO_LONG,
            text: format!("{which} key is longer than {max_key_bytes} bytes\n").into(),
            allow: None,
        }
    }
}

impl Request<'_> {
    /// The request's method.
    pub fn method(&self) -> Method {
        match self {
            Request::Probe | Request::Get { .. } | Request::Peek { .. } => Method::GET,
            Request::GetMany { .. }
            | Request::PeekMany { .. }
            | Request::Fill { .. }
            | Request::RemoveMany { .. } => Method::POST,
            Request::Set { .. } => Method::PUT,
            Request::Remove { .. } | Request::Purge { .. } => Method::DELETE,
        }
    }

    /// The request's path and query under `base` (which starts and ends with `/`).
    pub fn path(&self, base: &str) -> String {
        let mut path = String::from(base);
        match self {
            Request::Probe => {}
            Request::Get { group, key }
            | Request::Peek { group, key }
            | Request::Set { group, key, .. }
            | Request::Remove { group, key } => {
                path.extend(utf8_percent_encode(group, COMPONENT));
                path.push('/');
                path.extend(percent_encoding::percent_encode(key, COMPONENT));
            }
            Request::GetMany { group }
            | Request::PeekMany { group }
            | Request::Fill { group }
            | Request::RemoveMany { group }
            | Request::Purge { group } => path.extend(utf8_percent_encode(group, COMPONENT)),
        }
        let query = match self {
            Request::GetMany { .. } => Some(BATCH_QUERY),
            Request::Peek { .. } | Request::PeekMany { .. } => Some(PEEK_QUERY),
            Request::Fill { .. } => Some(FILL_QUERY),
            _ => None,
        };
        if let Some(query) = query {
            path.push('?');
            path.push_str(query);
        }
        // In the query, so that a proof, which covers the path and query, covers it too.
        if let Request::Set { ttl: Some(ttl), .. } = self {
            let ms = ttl.as_millis().max(1);
            path.push_str(&format!("?{TTL_QUERY}={ms}"));
        }
        path
    }

    /// The request a `method` to `path` with `query` is, under `base`, with keys of at most
    /// `max_key_bytes` (after decoding).
    ///
    /// # Errors
    /// A [`Refusal`]: `405` for another method, `400` for a path that is not one of the
    /// protocol's (or a bad escape, or a set's query other than one `ttl-ms`), `414` for a key
    /// that is too long.
    pub fn parse(
        method: &Method,
        path: &str,
        query: Option<&str>,
        base: &str,
        max_key_bytes: usize,
    ) -> Result<Request<'static>, Refusal> {
        let keyed = || -> Result<(Cow<'static, str>, Cow<'static, [u8]>), Refusal> {
            let (group, key) = split_key_path(base, path)?;
            if key.len() > max_key_bytes {
                return Err(Refusal::key_too_long(max_key_bytes, false));
            }
            Ok((group.into(), key.into()))
        };
        let grouped = || split_group_path(base, path).map(Cow::Owned);
        Ok(match *method {
            Method::GET | Method::HEAD if path == base => Request::Probe,
            Method::GET | Method::HEAD if query == Some(PEEK_QUERY) => {
                let (group, key) = keyed()?;
                Request::Peek { group, key }
            }
            Method::GET | Method::HEAD => {
                let (group, key) = keyed()?;
                Request::Get { group, key }
            }
            Method::PUT => {
                let (group, key) = keyed()?;
                let ttl = ttl_from_query(query).map_err(|why| Refusal::bad(format!("{why}\n")))?;
                Request::Set { group, key, ttl }
            }
            Method::DELETE => match grouped() {
                Ok(group) => Request::Purge { group },
                Err(_) => {
                    let (group, key) = keyed()?;
                    Request::Remove { group, key }
                }
            },
            Method::POST if query == Some(BATCH_QUERY) => Request::GetMany { group: grouped()? },
            Method::POST if query == Some(PEEK_QUERY) => Request::PeekMany { group: grouped()? },
            Method::POST if query == Some(FILL_QUERY) => Request::Fill { group: grouped()? },
            Method::POST => Request::RemoveMany { group: grouped()? },
            _ => {
                return Err(Refusal {
                    status: StatusCode::METHOD_NOT_ALLOWED,
                    text: format!("allowed: {ALLOWED}\n").into(),
                    allow: Some(ALLOWED),
                });
            }
        })
    }

    /// The group the request is for; `None` for the probe.
    pub fn group(&self) -> Option<&str> {
        match self {
            Request::Probe => None,
            Request::Get { group, .. }
            | Request::Peek { group, .. }
            | Request::PeekMany { group }
            | Request::Fill { group }
            | Request::GetMany { group }
            | Request::Set { group, .. }
            | Request::Remove { group, .. }
            | Request::RemoveMany { group }
            | Request::Purge { group } => Some(group),
        }
    }
}

/// Whether a request of `method` to `path` (and query) changes what a node holds: a `PUT`, a
/// `DELETE`, or a `POST` other than a batch get or peek (a batch remove, a fill). Such a request
/// must apply once (see `PeerSecrets`).
pub(crate) fn changes_state(method: &str, path: &str) -> bool {
    let query = path.split_once('?').map(|(_, query)| query);
    let batch_read = method == "POST" && matches!(query, Some(BATCH_QUERY | PEEK_QUERY));
    !matches!(method, "GET" | "HEAD") && !batch_read
}

/// The time to live of a peer's `PUT`, from its query: `Ok(None)` without one.
fn ttl_from_query(query: Option<&str>) -> Result<Option<Duration>, &'static str> {
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

/// A time to live as the protocol writes it (`x-alo-ttl-ms`, `ttl-ms=`): whole milliseconds, at
/// least 1. `None` for anything else.
pub fn parse_ttl(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = text.parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The body of a batch get or remove: each key percent-encoded as in a path, one per line.
pub fn encode_keys(keys: &[Bytes]) -> Bytes {
    let mut body = String::new();
    for key in keys {
        body.extend(percent_encoding::percent_encode(key, COMPONENT));
        body.push('\n');
    }
    Bytes::from(body)
}

/// The keys of a batch get's or remove's body, each of at most `max_key_bytes`.
///
/// # Errors
/// A [`Refusal`]: `400` for no keys, an empty line or a bad escape (which refuse the whole
/// batch), `414` for a key that is too long.
pub fn decode_keys(body: &[u8], max_key_bytes: usize) -> Result<Vec<Bytes>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| bad_encoding())?;
    let keys = text
        .lines()
        .map(|line| match line {
            "" => Err(malformed("an empty key")),
            line => decode(line).map(Bytes::from),
        })
        .collect::<Result<Vec<Bytes>, Refusal>>()?;
    if keys.is_empty() {
        return Err(Refusal::bad("no keys\n"));
    }
    if keys.iter().any(|k| k.len() > max_key_bytes) {
        return Err(Refusal::key_too_long(max_key_bytes, true));
    }
    Ok(keys)
}

/// The body of a fill: each value a head line `{key} {ttl} {length}`, the key percent-encoded
/// as in a path, the time it has left in whole milliseconds (`-` when it does not expire),
/// then the value's bytes.
pub fn encode_fill(values: &[(Bytes, alo_group::Found)]) -> Bytes {
    let mut body = Vec::new();
    for (key, found) in values {
        body.extend(percent_encoding::percent_encode(key, COMPONENT).flat_map(str::bytes));
        match found.ttl {
            Some(ttl) => body.extend_from_slice(format!(" {}", ttl.as_millis().max(1)).as_bytes()),
            None => body.extend_from_slice(b" -"),
        }
        body.extend_from_slice(format!(" {}\n", found.value.len()).as_bytes());
        body.extend_from_slice(&found.value);
    }
    Bytes::from(body)
}

/// The values of a fill's body, each key of at most `max_key_bytes`.
///
/// # Errors
/// A [`Refusal`]: `400` for a body that does not follow the format (the whole fill is refused),
/// `414` for a key that is too long.
pub fn decode_fill(
    body: &Bytes,
    max_key_bytes: usize,
) -> Result<Vec<(Bytes, alo_group::Found)>, Refusal> {
    let bad = || Refusal::bad("a fill that does not follow the protocol\n");
    let mut values = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let head_len = body[at..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(bad)?;
        let head = std::str::from_utf8(&body[at..at + head_len]).map_err(|_| bad())?;
        let mut fields = head.split(' ');
        let (Some(key), Some(ttl), Some(len), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let key = Bytes::from(decode(key)?);
        if key.is_empty() {
            return Err(bad());
        }
        if key.len() > max_key_bytes {
            return Err(Refusal::key_too_long(max_key_bytes, true));
        }
        let ttl = match ttl {
            "-" => None,
            ms => Some(parse_ttl(ms.as_bytes()).ok_or_else(bad)?),
        };
        let len: usize = len.parse().map_err(|_| bad())?;
        let start = at + head_len + 1;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or_else(bad)?;
        values.push((key, alo_group::Found::new(body.slice(start..end), ttl)));
        at = end;
    }
    Ok(values)
}

/// Splits and decodes `{base}{group}/{key}`.
fn split_key_path(base: &str, path: &str) -> Result<(String, Vec<u8>), Refusal> {
    let rest = path
        .strip_prefix(base)
        .ok_or_else(|| malformed("the path does not start with the base path"))?;
    let (group, key) = rest
        .split_once('/')
        .ok_or_else(|| malformed("expected {group}/{key}"))?;
    if group.is_empty() {
        return Err(malformed("the group is empty"));
    }
    if key.is_empty() {
        return Err(malformed("the key is empty"));
    }
    let group =
        String::from_utf8(decode(group)?).map_err(|_| malformed("the group is not UTF-8"))?;
    Ok((group, decode(key)?))
}

/// Splits and decodes `{base}{group}`.
fn split_group_path(base: &str, path: &str) -> Result<String, Refusal> {
    let rest = path
        .strip_prefix(base)
        .ok_or_else(|| malformed("the path does not start with the base path"))?;
    if rest.is_empty() || rest.contains('/') {
        return Err(malformed("expected {group}"));
    }
    String::from_utf8(decode(rest)?).map_err(|_| malformed("the group is not UTF-8"))
}

/// Strict percent-decoding: `percent_decode` passes malformed escapes through, which would let
/// two spellings name one key.
fn decode(component: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = component.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad_encoding)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad_encoding());
            }
        }
    }
    Ok(percent_decode(bytes).collect())
}

fn malformed(why: &'static str) -> Refusal {
    Refusal::bad(format!("malformed path: {why}\n"))
}

fn bad_encoding() -> Refusal {
    Refusal::bad("bad percent-encoding in the path\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/_alo/";

    fn parse(method: Method, path: &str) -> Result<Request<'static>, Refusal> {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        Request::parse(&method, path, query, BASE, 250)
    }

    #[test]
    fn every_request_round_trips_through_its_method_and_path() {
        let key: &[u8] = b"a/b c%d\xff\x00";
        let group = "grp one";
        let requests = [
            Request::Probe,
            Request::Get {
                group: group.into(),
                key: key.into(),
            },
            Request::GetMany {
                group: group.into(),
            },
            Request::Peek {
                group: group.into(),
                key: key.into(),
            },
            Request::PeekMany {
                group: group.into(),
            },
            Request::Fill {
                group: group.into(),
            },
            Request::Set {
                group: group.into(),
                key: key.into(),
                ttl: Some(Duration::from_millis(1500)),
            },
            Request::Set {
                group: group.into(),
                key: "ключ".as_bytes().into(),
                ttl: None,
            },
            Request::Remove {
                group: group.into(),
                key: b"~-._".as_slice().into(),
            },
            Request::RemoveMany {
                group: group.into(),
            },
            Request::Purge {
                group: group.into(),
            },
        ];
        for request in requests {
            let path = request.path(BASE);
            assert_eq!(
                parse(request.method(), &path),
                Ok(request.clone()),
                "{path}"
            );
        }
        let get = Request::Get {
            group: "g".into(),
            key: b"a/b".as_slice().into(),
        };
        assert_eq!(get.path(BASE), "/_alo/g/a%2Fb");
    }

    #[test]
    fn malformed_paths_are_refused() {
        for path in [
            "/other/g/k",
            "/_alo/g",
            "/_alo//k",
            "/_alo/g/",
            "/_alo/%FF/k",
            "/_alo/g/%zz",
            "/_alo/g/ab%4",
        ] {
            let refused = parse(Method::GET, path).expect_err(path);
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        }
        assert!(
            parse(Method::GET, "/_alo/g/%zz")
                .expect_err("bad escape")
                .text
                .contains("percent-encoding")
        );
        for path in ["/_alo/", "/_alo/g/k"] {
            assert!(parse(Method::POST, path).is_err(), "{path}");
        }
        let refused = parse(Method::PATCH, "/_alo/g/k").expect_err("PATCH");
        assert_eq!(
            (refused.status, refused.allow),
            (StatusCode::METHOD_NOT_ALLOWED, Some(ALLOWED))
        );
        let long = format!("/_alo/g/{}", "k".repeat(251));
        let refused = parse(Method::GET, &long).expect_err("too long");
        assert_eq!(refused.status, StatusCode::URI_TOO_LONG);
        for query in ["ttl-ms=0", "ttl-ms=1&ttl-ms=2", "other=1", "ttl-ms=1.5"] {
            let path = format!("/_alo/g/k?{query}");
            assert!(parse(Method::PUT, &path).is_err(), "{query}");
        }
    }

    #[test]
    fn batches_of_any_keys_round_trip() {
        let keys = [
            Bytes::from_static(b"plain"),
            Bytes::from_static(b"line\nbreak"),
            Bytes::from_static(b"\xff\x00"),
        ];
        assert_eq!(decode_keys(&encode_keys(&keys), 250), Ok(keys.to_vec()));
        assert!(decode_keys(b"a\n\nb\n", 250).is_err(), "an empty key");
        assert!(decode_keys(b"a%zz\n", 250).is_err());
        assert!(decode_keys(b"", 250).is_err(), "no keys");
        let refused = decode_keys(b"abc\nabcd\n", 3).expect_err("too long");
        assert_eq!(refused.status, StatusCode::URI_TOO_LONG);
    }

    #[test]
    fn fills_round_trip_and_refuse_what_does_not_parse() {
        let values = vec![
            (
                Bytes::from_static(b"a key\n"),
                alo_group::Found::new(Bytes::from_static(b"a value\nwith lines"), None),
            ),
            (
                Bytes::from_static(b"\xff"),
                alo_group::Found::new(Bytes::new(), Some(Duration::from_millis(1500))),
            ),
        ];
        let body = encode_fill(&values);
        assert_eq!(decode_fill(&body, 250), Ok(values));
        for bad in [
            &b"k - 5\nabc"[..],
            b"k 0 1\nx",
            b"k - 1",
            b" - 0\n",
            b"k - 0 x\n",
        ] {
            assert!(
                decode_fill(&Bytes::from_static(bad), 250).is_err(),
                "{bad:?}"
            );
        }
        let long = encode_fill(&[(
            Bytes::from(vec![b'k'; 251]),
            alo_group::Found::new(Bytes::new(), None),
        )]);
        assert_eq!(
            decode_fill(&long, 250).map_err(|r| r.status),
            Err(StatusCode::URI_TOO_LONG)
        );
    }

    #[test]
    fn writes_change_state_and_batch_gets_do_not() {
        assert!(changes_state("PUT", "/_alo/g/k?ttl-ms=5"));
        assert!(changes_state("DELETE", "/_alo/g"));
        assert!(changes_state("POST", "/_alo/g"));
        assert!(!changes_state("POST", "/_alo/g?get"));
        assert!(!changes_state("POST", "/_alo/g?peek"));
        assert!(changes_state("POST", "/_alo/g?fill"));
        assert!(!changes_state("GET", "/_alo/g/k"));
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
