//! Answers: a group's value with its freshness, or why there is none, as a response's status and
//! headers, or as one frame of a batch get's body; and what the asking node makes of either.

use std::borrow::Cow;
use std::time::Duration;

use alo_group::{Error as GroupError, Found, LoadError, Stale, escape_bytes};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::{
    ERROR_HEADER, INVALID_KEY, LOAD_FAILED, LOAD_TIMEOUT, NOT_FOUND, NOT_HELD, RATE_HEADER,
    STALE_HEADER, TOO_LARGE, TTL_HEADER, UNKNOWN_GROUP, parse_ttl,
};

/// The status of a batch frame whose key the owner did not answer in the batch: it is loading
/// it, or the key was past the batch's limit. The asker asks for it alone.
pub(crate) const PENDING: u16 = 202;

/// Why a node has no value to answer with: a status, the `x-alo-error` code that tells the
/// asking node what it means, and a short text. What a client sees, so the text never holds a
/// cause (a path, an origin's URL, a panic's message): those are in the answering node's log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The status.
    pub status: StatusCode,
    /// The `x-alo-error` code, for the failures the asking node tells apart.
    pub code: Option<&'static str>,
    /// A line for the client, ending with `\n`.
    pub text: Cow<'static, str>,
}

impl Failure {
    fn new(status: StatusCode, code: Option<&'static str>, text: &'static str) -> Self {
        Failure {
            status,
            code,
            text: Cow::Borrowed(text),
        }
    }

    /// How a group's error is answered, for a read or a write.
    pub fn of(e: &GroupError) -> Failure {
        match e {
            GroupError::NotFound => {
                Failure::new(StatusCode::NOT_FOUND, Some(NOT_FOUND), "key not found\n")
            }
            GroupError::EmptyKey => {
                Failure::new(StatusCode::BAD_REQUEST, None, "the key is empty\n")
            }
            GroupError::InvalidKey(reason) => Failure {
                status: StatusCode::BAD_REQUEST,
                code: Some(INVALID_KEY),
                text: format!("invalid key: {reason}\n").into(),
            },
            // The cause (an origin's URL, a path, a panic's message) is in the log, written
            // where the load failed; a client gets the category.
            GroupError::Load(_) => Failure::new(
                StatusCode::BAD_GATEWAY,
                Some(LOAD_FAILED),
                "the origin failed\n",
            ),
            GroupError::Timeout => Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                Some(LOAD_TIMEOUT),
                "the load timed out\n",
            ),
            GroupError::Panicked(_) => Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(LOAD_FAILED),
                "internal error\n",
            ),
            GroupError::ValueTooLarge { max, .. } => Failure {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: Some(TOO_LARGE),
                text: format!("the value is larger than the {max} bytes a value may have\n").into(),
            },
            GroupError::ZeroTtl => Failure::new(
                StatusCode::BAD_REQUEST,
                None,
                "the TTL must be above zero\n",
            ),
            // The owner's URL and the transport's message are in the log.
            GroupError::NotStored(_) => Failure::new(
                StatusCode::BAD_GATEWAY,
                None,
                "the key's owner did not store the value\n",
            ),
            e => {
                tracing::error!(error = %e, "unexpected error answering a request");
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error\n")
            }
        }
    }

    /// A peek at a key this node does not hold.
    pub fn not_held() -> Failure {
        Failure::new(StatusCode::NOT_FOUND, Some(NOT_HELD), "not held here\n")
    }

    /// A group this node does not have.
    pub fn unknown_group(name: &str) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            code: Some(UNKNOWN_GROUP),
            text: format!("no group {name:?}\n").into(),
        }
    }

    /// The failure's code as a response header, if it has one.
    pub fn put_code(&self, headers: &mut HeaderMap) {
        if let Some(code) = self.code {
            headers.insert(ERROR_HEADER, HeaderValue::from_static(code));
        }
    }

    /// The failure as a response: its status, its code, and its text as `text/plain`.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut resp = text(self.status, self.text.clone());
        self.put_code(resp.headers_mut());
        resp
    }
}

/// A short `text/plain` answer.
pub fn text(status: StatusCode, body: impl Into<Cow<'static, str>>) -> Response<Full<Bytes>> {
    let body = match body.into() {
        Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A `200`'s headers for `found`: `application/octet-stream`, and `x-alo-stale` when it was
/// served stale, else `x-alo-ttl-ms` when it expires; `x-alo-rate` when it carries the owner's
/// rate of asks.
pub fn put_found(found: &Found, headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    match Fields::of(found) {
        Fields::Stale(why) => {
            headers.insert(STALE_HEADER, HeaderValue::from_static(why.as_str()));
        }
        Fields::Fresh { ttl_ms, rate } => {
            if let Some(ms) = ttl_ms {
                headers.insert(TTL_HEADER, HeaderValue::from(ms));
            }
            if let Some(rate) = rate {
                headers.insert(RATE_HEADER, HeaderValue::from(rate));
            }
        }
    }
}

/// What a value's answer says besides the value, in headers or a frame's token.
enum Fields {
    /// Fresh, with how many milliseconds it has left (`None`: it does not expire) and the
    /// owner's rate of asks for the key, if it gave one.
    Fresh {
        ttl_ms: Option<u64>,
        rate: Option<u32>,
    },
    /// Served stale: it may not be kept, so no rate goes with it.
    Stale(Stale),
}

impl Fields {
    fn of(found: &Found) -> Fields {
        match (found.stale, found.ttl) {
            (Some(why), _) => Fields::Stale(why),
            (None, ttl) => Fields::Fresh {
                ttl_ms: ttl.map(|ttl| ttl.as_millis() as u64),
                rate: found.rate,
            },
        }
    }

    /// The fields of a frame's token: `-` for none, else `name=value` pieces joined by `;`
    /// (`stale=…`, or any of `ttl-ms=…` and `rate=…`).
    fn token(&self) -> String {
        let pieces = match self {
            Fields::Stale(why) => vec![format!("stale={}", why.as_str())],
            Fields::Fresh { ttl_ms, rate } => {
                let ttl = ttl_ms.map(|ms| format!("ttl-ms={ms}"));
                let rate = rate.map(|rate| format!("rate={rate}"));
                ttl.into_iter().chain(rate).collect()
            }
        };
        if pieces.is_empty() {
            "-".to_string()
        } else {
            pieces.join(";")
        }
    }
}

/// An answer for one key, read back by the asking node, from a response or a batch frame.
pub(crate) enum Answer {
    /// The owner's value, or its answer without one (`LoadError::Unreachable` for an answer
    /// outside the protocol).
    Got(Result<Found, LoadError>),
    /// A batch frame `202`: ask for the key alone.
    AskAlone,
}

impl Answer {
    /// A single response's answer: its status, headers and body, from the member `peer`.
    pub(crate) fn of_response(
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        peer: &str,
    ) -> Result<Found, LoadError> {
        let header = |name| headers.get(name).map(HeaderValue::as_bytes);
        if status != StatusCode::OK {
            return failed(status, header(ERROR_HEADER), &body, peer);
        }
        let fields = Read {
            stale: header(STALE_HEADER),
            ttl: header(TTL_HEADER),
            rate: header(RATE_HEADER),
        };
        Ok(fields.found(body))
    }

    /// A batch frame's answer: its status, token and body, from the member `peer`.
    fn of_frame(status: u16, token: &[u8], body: Bytes, peer: &str) -> Answer {
        if status == PENDING {
            return Answer::AskAlone;
        }
        let Ok(status) = StatusCode::from_u16(status) else {
            return Answer::Got(Err(LoadError::unreachable(format_args!(
                "{peer}: a frame with status {status}"
            ))));
        };
        Answer::Got(match (status, token) {
            (StatusCode::OK, token) => Ok(Read::token(token).found(body)),
            (status, b"-") => failed(status, None, &body, peer),
            (status, code) => failed(status, Some(code), &body, peer),
        })
    }
}

/// The fields of a `200` as read, from its headers or its frame's token.
#[derive(Default)]
struct Read<'a> {
    stale: Option<&'a [u8]>,
    ttl: Option<&'a [u8]>,
    rate: Option<&'a [u8]>,
}

impl<'a> Read<'a> {
    /// A frame's token: `-`, or `name=value` pieces joined by `;`. A piece it does not know is
    /// passed over; a token that is neither is a time to live that cannot be read.
    fn token(token: &'a [u8]) -> Self {
        let mut read = Read::default();
        if token == b"-" {
            return read;
        }
        for piece in token.split(|&b| b == b';') {
            if let Some(why) = piece.strip_prefix(b"stale=") {
                read.stale = Some(why);
            } else if let Some(ms) = piece.strip_prefix(b"ttl-ms=") {
                read.ttl = Some(ms);
            } else if let Some(rate) = piece.strip_prefix(b"rate=") {
                read.rate = Some(rate);
            } else if !piece.contains(&b'=') {
                read.ttl = Some(b"");
            }
        }
        read
    }

    /// The value with its freshness. A value marked stale, or whose time to live cannot be
    /// read, is served and not kept; a rate that cannot be read is no rate.
    fn found(self, body: Bytes) -> Found {
        let found = match (self.stale, self.ttl) {
            (Some(why), _) => return Found::stale(body, Stale::parse(why)),
            (None, Some(ms)) => Found::new(body, Some(parse_ttl(ms).unwrap_or(Duration::ZERO))),
            (None, None) => Found::new(body, None),
        };
        let rate = self
            .rate
            .and_then(|r| std::str::from_utf8(r).ok()?.parse().ok());
        match rate {
            Some(rate) => found.with_rate(rate),
            None => found,
        }
    }
}

/// What an answer without a value means for the asking node: the owner's own answer about the
/// key or its load, or no answer at all (another status, a code it does not know).
fn failed(
    status: StatusCode,
    code: Option<&[u8]>,
    body: &[u8],
    peer: &str,
) -> Result<Found, LoadError> {
    let text = || {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        text.trim_end().to_string()
    };
    Err(match (status, code) {
        // A peek's "not held" is its "not found".
        (StatusCode::NOT_FOUND, Some(code))
            if code == NOT_FOUND.as_bytes() || code == NOT_HELD.as_bytes() =>
        {
            LoadError::NotFound
        }
        (StatusCode::BAD_REQUEST, Some(code)) if code == INVALID_KEY.as_bytes() => {
            let text = text();
            LoadError::InvalidKey(text.trim_start_matches("invalid key: ").into())
        }
        (_, Some(code)) if code == LOAD_FAILED.as_bytes() => {
            LoadError::failed(format_args!("the owner's load failed: {}", text()))
        }
        (_, Some(code)) if code == LOAD_TIMEOUT.as_bytes() => LoadError::Timeout,
        (status, _) => LoadError::unreachable(format_args!(
            "{peer} answered {status}: {}",
            escape_bytes(text().as_bytes())
        )),
    })
}

/// Appends a frame of `found` to a batch get's answer: `200 {token} {length}\n{value}`, the
/// token saying what the headers of a single answer would.
pub(crate) fn push_found(out: &mut Vec<u8>, found: &Found) {
    push(out, 200, &[&Fields::of(found).token()], &found.value);
}

/// Appends a frame of `failure`: its status, its code (`-` for none) and its text.
pub(crate) fn push_failure(out: &mut Vec<u8>, failure: &Failure) {
    let code = failure.code.unwrap_or("-");
    push(
        out,
        failure.status.as_u16(),
        &[code],
        failure.text.as_bytes(),
    );
}

/// Appends a `202` frame: ask for this key alone.
pub(crate) fn push_pending(out: &mut Vec<u8>) {
    push(out, PENDING, &["-"], b"");
}

/// `{status} {token} {length}\n{body}`, the token in pieces.
fn push(out: &mut Vec<u8>, status: u16, token: &[&str], body: &[u8]) {
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    for piece in token {
        out.extend_from_slice(piece.as_bytes());
    }
    out.extend_from_slice(format!(" {}\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

/// The frames of a batch get's answer, read in order.
pub(crate) struct Frames {
    body: Bytes,
    at: usize,
}

impl Frames {
    /// The frames of `body`.
    pub(crate) fn new(body: Bytes) -> Self {
        Frames { body, at: 0 }
    }

    /// Every frame's answer, from the member `peer`, with the length of its body; `None` at the
    /// first byte that does not follow the format.
    pub(crate) fn answers(mut self, peer: &str) -> Option<Vec<(Answer, usize)>> {
        let mut answers = Vec::new();
        while self.at < self.body.len() {
            let (status, token, value) = self.next_frame()?;
            let len = value.len();
            let token = &self.body[token.0..token.1];
            answers.push((Answer::of_frame(status, token, value, peer), len));
        }
        Some(answers)
    }

    /// The next frame: its status, where its token is, and its body.
    fn next_frame(&mut self) -> Option<(u16, (usize, usize), Bytes)> {
        let body = &self.body;
        let at = self.at;
        let head_len = body[at..].iter().position(|&b| b == b'\n')?;
        let head = &body[at..at + head_len];
        let mut fields = head.split(|&b| b == b' ');
        let (status, token, len) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || status.len() != 3 || token.is_empty() {
            return None;
        }
        let token_at = at + status.len() + 1;
        let token = (token_at, token_at + token.len());
        let status = std::str::from_utf8(status).ok()?.parse().ok()?;
        let len: usize = std::str::from_utf8(len).ok()?.parse().ok()?;
        let start = at + head_len + 1;
        let end = start.checked_add(len).filter(|&end| end <= body.len())?;
        self.at = end;
        Some((status, token, body.slice(start..end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "http://peer:1";

    /// The frames of `body`, as the asking node reads them: `Ok` values with their ttl and
    /// staleness, errors, or `None` for ask-alone.
    fn read(body: Vec<u8>) -> Option<Vec<Option<Result<Found, LoadError>>>> {
        let answers = Frames::new(Bytes::from(body)).answers(PEER)?;
        Some(
            answers
                .into_iter()
                .map(|(answer, _)| match answer {
                    Answer::Got(got) => Some(got),
                    Answer::AskAlone => None,
                })
                .collect(),
        )
    }

    #[test]
    fn frames_round_trip_what_a_single_answer_says() {
        let fresh = Found::new(
            Bytes::from_static(b"a value\nwith a line"),
            Some(Duration::from_millis(1500)),
        );
        let rated = fresh.clone().with_rate(96);
        let rated_forever = Found::new(Bytes::from_static(b"r"), None).with_rate(0);
        let forever = Found::new(Bytes::new(), None);
        let stale = Found::stale(Bytes::from_static(b"old"), Stale::WhileRevalidate);
        let mut body = Vec::new();
        push_found(&mut body, &fresh);
        push_found(&mut body, &rated);
        push_found(&mut body, &rated_forever);
        push_found(&mut body, &forever);
        push_found(&mut body, &stale);
        push_failure(&mut body, &Failure::of(&GroupError::NotFound));
        push_failure(&mut body, &Failure::of(&GroupError::Timeout));
        push_failure(
            &mut body,
            &Failure::of(&GroupError::InvalidKey("no such".into())),
        );
        push_failure(&mut body, &Failure::of(&GroupError::EmptyKey));
        push_pending(&mut body);
        let want = vec![
            Some(Ok(fresh)),
            Some(Ok(rated)),
            Some(Ok(rated_forever)),
            Some(Ok(forever)),
            Some(Ok(stale)),
            Some(Err(LoadError::NotFound)),
            Some(Err(LoadError::Timeout)),
            Some(Err(LoadError::InvalidKey("no such".into()))),
            Some(Err(LoadError::unreachable(
                "http://peer:1 answered 400 Bad Request: the key is empty",
            ))),
            None,
        ];
        assert_eq!(read(body), Some(want));
    }

    #[test]
    fn a_single_answer_reads_as_its_frame_does() {
        for found in [
            Found::new(Bytes::from_static(b"v"), Some(Duration::from_millis(7))),
            Found::new(Bytes::from_static(b"v"), None).with_rate(12),
        ] {
            let mut headers = HeaderMap::new();
            put_found(&found, &mut headers);
            let got = Answer::of_response(StatusCode::OK, &headers, found.value.clone(), PEER);
            assert_eq!(got, Ok(found));
        }
        let failure = Failure::of(&GroupError::Load("the database is down".into()));
        assert_eq!(
            failure.text, "the origin failed\n",
            "no cause for the client"
        );
        let mut headers = HeaderMap::new();
        failure.put_code(&mut headers);
        let got = Answer::of_response(
            failure.status,
            &headers,
            Bytes::from(failure.text.into_owned()),
            PEER,
        );
        assert_eq!(
            got,
            Err(LoadError::failed(
                "the owner's load failed: the origin failed"
            ))
        );
        // A time to live that does not parse: served, not kept.
        let mut headers = HeaderMap::new();
        headers.insert(TTL_HEADER, HeaderValue::from_static("soon"));
        let got = Answer::of_response(StatusCode::OK, &headers, Bytes::new(), PEER);
        assert_eq!(got.map(|f| f.ttl), Ok(Some(Duration::ZERO)));
    }

    #[test]
    fn frames_that_do_not_parse_are_refused() {
        for bad in [
            &b"200 - 5\nabc"[..],
            b"200 - 3",
            b"200 -\nabc",
            b"2000 - 0\n",
            b"200 - 0 x\n",
            b"200 - -1\n",
            b"200  0\n",
            b"200 - 99999999999999999999999\n",
        ] {
            assert!(read(bad.to_vec()).is_none(), "{bad:?}");
        }
        assert_eq!(read(Vec::new()), Some(vec![]));
    }
}
