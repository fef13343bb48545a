//! Proof that a peer request comes from a member of the cluster: an HMAC-SHA256, with a secret
//! every member holds, over the member it is for, the request's head, the time it was sent, the
//! digest of its body and, for a write, its sender and sequence number, so that a captured
//! write applies once, and only where it was sent.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::protocol::changes_state;

/// The header that carries a request's proof:
/// `t=<unix seconds>,from=<sender>,n=<sequence>,body=<hex SHA-256 of the body>,sig=<hex>`.
pub const AUTH_HEADER: &str = "x-alo-auth";

/// How far a proof's time may be from the server's clock, either way: a captured read can be
/// replayed within this window only (a captured write not at all).
pub const REPLAY_WINDOW: Duration = Duration::from_secs(30);

/// How many of a sender's latest writes a receiver tells apart: a write that arrives after this
/// many later ones from the same sender is refused, as a replay would be.
pub const WRITES_REMEMBERED: u64 = 4096;

/// The shortest secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 16;

/// The hex SHA-256 of no bytes: the body digest of every read.
const EMPTY_DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

type HmacSha256 = Hmac<Sha256>;

/// The cluster's shared secrets: the first signs this node's requests, and a request signed
/// with any of them is accepted, so a secret can be rotated without downtime (add the new one
/// second everywhere, then first, then drop the old one).
///
/// The proof of a request is HMAC-SHA256 with the secret over
/// `{METHOD}\n{receiver's URL}\n{path and query}\n{unix seconds}\n{sender}\n{sequence}\n{hex
/// SHA-256 of the body}`, sent as `x-alo-auth: t={unix seconds},from={sender},n={sequence},
/// body={hex},sig={hex}` and checked in constant time. The receiver's URL is not sent: the
/// server checks the proof with its own, so a request proves itself to the member it was made
/// for and to no other. A server checks the proof from the request's head, before it reads a
/// byte of the body, and then checks the body against the digest the proof covers.
///
/// **Replays.** Every proof is bound to its receiver and its time: one more than
/// [`REPLAY_WINDOW`] from the server's clock is refused. A write (a `PUT`, a `DELETE`, a `POST`
/// other than a batch get) is bound to more: its sender (a random name each `PeerSecrets` draws,
/// so a node that restarts is a new sender) and the sender's next sequence number. A server
/// applies each sender's sequence number once, keeps the last [`WRITES_REMEMBERED`] of them
/// apart, and forgets a sender silent for twice the replay window, by when its proofs have
/// expired. It refuses writes signed before it started, which it could not tell from replays. So
/// a captured write applies nothing, sent again to its receiver or to any other member; a read (a
/// `GET`, a batch get) may be replayed to its receiver within the window, which gives the
/// replayer only the answer the capture already held.
#[derive(Clone)]
pub struct PeerSecrets {
    inner: Arc<Shared>,
}

/// What every clone of a `PeerSecrets` shares: the keys, this node as a sender, and the writes
/// it has seen as a receiver.
struct Shared {
    keys: Vec<Vec<u8>>,
    /// This node's name as a sender of writes.
    sender: u64,
    /// The sequence number of this node's last signed write.
    sent: AtomicU64,
    /// When the secrets were made, in unix seconds: writes signed before are refused.
    since: u64,
    /// The writes applied, by sender.
    seen: Mutex<HashMap<u64, Seen>>,
}

/// A request whose head proves it: what its body must still match, and for a write, what must
/// not have been applied before.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Proven {
    digest: [u8; 32],
    write: Option<(u64, u64)>,
}

/// Why a request's proof was refused; for the server's log, never for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Missing,
    Malformed,
    OutsideWindow,
    BadSignature,
    BeforeStart,
    Replayed,
    BodyMismatch,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Missing => "no proof",
            Refused::Malformed => "a malformed proof",
            Refused::OutsideWindow => "a proof outside the replay window",
            Refused::BadSignature => "a signature no secret makes",
            Refused::BeforeStart => "a write signed before this node started",
            Refused::Replayed => "a write applied before (a replay, or too late)",
            Refused::BodyMismatch => "a body that is not the one signed",
        })
    }
}

impl PeerSecrets {
    /// One or two secrets, each at least 16 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidSecret`] for none, more than two, or one that is too short.
    pub fn new<I, S>(secrets: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let keys: Vec<Vec<u8>> = secrets.into_iter().map(|s| s.as_ref().to_vec()).collect();
        if keys.is_empty() || keys.len() > 2 {
            return Err(Error::InvalidSecret(
                "give one secret, or two while rotating",
            ));
        }
        if keys.iter().any(|k| k.len() < MIN_SECRET_BYTES) {
            return Err(Error::InvalidSecret("a secret must be at least 16 bytes"));
        }
        Ok(PeerSecrets {
            inner: Arc::new(Shared {
                keys,
                sender: fastrand::u64(..),
                sent: AtomicU64::new(0),
                since: unix_seconds(SystemTime::now()),
                seen: Mutex::default(),
            }),
        })
    }

    /// The secrets of a secret file: one a line, surrounding spaces ignored, empty lines and
    /// lines starting with `#` skipped.
    ///
    /// # Errors
    /// As [`new`](PeerSecrets::new).
    pub fn from_lines(text: &str) -> Result<Self, Error> {
        PeerSecrets::new(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#')),
        )
    }

    /// The `x-alo-auth` value for a request to the member at `to` (its URL as the members know
    /// it, `http://host:port`) of `method` to `path` (with its query) carrying `body`, sent at
    /// `at`. A write takes this node's next sequence number: its proof is good for one request,
    /// to that member.
    pub fn proof(&self, to: &str, method: &str, path: &str, body: &[u8], at: SystemTime) -> String {
        let shared = &self.inner;
        let t = unix_seconds(at);
        let n = match changes_state(method, path) {
            true => shared.sent.fetch_add(1, Ordering::Relaxed) + 1,
            false => 0,
        };
        let digest = match body {
            [] => EMPTY_DIGEST.to_string(),
            body => hex::encode(Sha256::digest(body)),
        };
        let fields = Fields {
            t,
            from: shared.sender,
            n,
            digest: &digest,
        };
        let mac = fields.mac(&shared.keys[0], to, method, path);
        let sig = hex::encode(mac.finalize().into_bytes());
        format!(
            "t={t},from={:016x},n={n},body={digest},sig={sig}",
            shared.sender
        )
    }

    /// Checks the proof of a request to this node, at `me`, from its head alone (`header` is the
    /// `x-alo-auth` value, if any): the time, the signature, and for a write that it was not
    /// applied before.
    pub(crate) fn check_head(
        &self,
        me: &str,
        method: &str,
        path: &str,
        header: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Proven, Refused> {
        let shared = &self.inner;
        let header = header.ok_or(Refused::Missing)?;
        let (fields, sig) = parse(header).ok_or(Refused::Malformed)?;
        if unix_seconds(now).abs_diff(fields.t) > REPLAY_WINDOW.as_secs() {
            return Err(Refused::OutsideWindow);
        }
        let sig = hex::decode(sig).map_err(|_| Refused::Malformed)?;
        let signed = shared
            .keys
            .iter()
            .any(|key| fields.mac(key, me, method, path).verify_slice(&sig).is_ok());
        if !signed {
            return Err(Refused::BadSignature);
        }
        let mut digest = [0; 32];
        hex::decode_to_slice(fields.digest, &mut digest).map_err(|_| Refused::Malformed)?;
        let write = changes_state(method, path).then_some((fields.from, fields.n));
        if let Some((from, n)) = write {
            if fields.t < shared.since {
                return Err(Refused::BeforeStart);
            }
            let seen = shared.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if n == 0 || seen.get(&from).is_some_and(|s| s.has(n)) {
                return Err(Refused::Replayed);
            }
        }
        Ok(Proven { digest, write })
    }

    /// Checks the body of a request whose head was proven, and takes a write's sequence number,
    /// so that the same proof applies nothing again.
    pub(crate) fn check_body(
        &self,
        proven: &Proven,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Refused> {
        if Sha256::digest(body)[..] != proven.digest {
            return Err(Refused::BodyMismatch);
        }
        let Some((from, n)) = proven.write else {
            return Ok(());
        };
        let now = unix_seconds(now);
        let mut seen = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !seen.contains_key(&from) {
            // A new sender: the time to forget the silent ones, whose proofs have all expired.
            let forget_after = 2 * REPLAY_WINDOW.as_secs() + 1;
            seen.retain(|_, s| now.saturating_sub(s.last) <= forget_after);
        }
        let sender = seen.entry(from).or_insert_with(Seen::new);
        sender.last = now;
        match sender.insert(n) {
            true => Ok(()),
            false => Err(Refused::Replayed),
        }
    }
}

/// A proof's fields besides its signature.
struct Fields<'a> {
    t: u64,
    from: u64,
    n: u64,
    /// The body's SHA-256, in hex.
    digest: &'a str,
}

impl Fields<'_> {
    fn mac(&self, key: &[u8], to: &str, method: &str, path: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        let Fields { t, from, n, digest } = self;
        let text = format!("{method}\n{to}\n{path}\n{t}\n{from:016x}\n{n}\n{digest}");
        mac.update(text.as_bytes());
        mac
    }
}

/// `t=<secs>,from=<hex>,n=<seq>,body=<hex>,sig=<hex>`, in that order.
fn parse(value: &[u8]) -> Option<(Fields<'_>, &str)> {
    let value = std::str::from_utf8(value).ok()?;
    let mut fields = value.split(',');
    let mut field = |name: &str| fields.next()?.strip_prefix(name);
    let t = field("t=")?.parse().ok()?;
    let from = field("from=")?;
    let from = u64::from_str_radix(from, 16)
        .ok()
        .filter(|_| from.len() == 16)?;
    let n = field("n=")?.parse().ok()?;
    let digest = field("body=")?;
    let sig = field("sig=")?;
    if fields.next().is_some() || digest.len() != 64 {
        return None;
    }
    Some((Fields { t, from, n, digest }, sig))
}

/// The sequence numbers of one sender's writes a receiver has applied: the highest, and which
/// of the [`WRITES_REMEMBERED`] below it (an anti-replay window, as IPsec keeps).
struct Seen {
    top: u64,
    bits: Box<[u64; WORDS]>,
    /// When the sender's last write was applied, in unix seconds.
    last: u64,
}

const WORDS: usize = (WRITES_REMEMBERED / 64) as usize;

impl Seen {
    fn new() -> Self {
        Seen {
            top: 0,
            bits: Box::new([0; WORDS]),
            last: 0,
        }
    }

    /// Whether `n` was applied, or is too old to tell.
    fn has(&self, n: u64) -> bool {
        if n > self.top {
            return false;
        }
        self.top - n >= WRITES_REMEMBERED || self.bit(n)
    }

    /// Takes `n`; `false` if it was taken, or is too old to tell.
    fn insert(&mut self, n: u64) -> bool {
        if self.has(n) {
            return false;
        }
        if n > self.top {
            if n - self.top >= WRITES_REMEMBERED {
                self.bits.fill(0);
            } else {
                for skipped in self.top + 1..n {
                    self.set(skipped, false);
                }
            }
            self.top = n;
        }
        self.set(n, true);
        true
    }

    fn bit(&self, n: u64) -> bool {
        let at = n % WRITES_REMEMBERED;
        self.bits[(at / 64) as usize] & (1 << (at % 64)) != 0
    }

    fn set(&mut self, n: u64, on: bool) {
        let at = n % WRITES_REMEMBERED;
        let word = &mut self.bits[(at / 64) as usize];
        match on {
            true => *word |= 1 << (at % 64),
            false => *word &= !(1 << (at % 64)),
        }
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl fmt::Debug for PeerSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSecrets")
            .field("secrets", &self.inner.keys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"0123456789abcdef-a";
    const B: &[u8] = b"0123456789abcdef-b";

    /// The member every request of these tests is for.
    const ME: &str = "http://10.0.0.1:8001";

    /// Whether `secrets`, at [`ME`], take the request whole: head, then body.
    fn verify(
        secrets: &PeerSecrets,
        (method, path, body): (&str, &str, &[u8]),
        proof: Option<&str>,
        now: SystemTime,
    ) -> Result<(), Refused> {
        let proven = secrets.check_head(ME, method, path, proof.map(str::as_bytes), now)?;
        secrets.check_body(&proven, body, now)
    }

    #[test]
    fn a_proof_verifies_for_its_request_only_and_within_the_window() {
        let secrets = PeerSecrets::new([A]).expect("valid");
        let now = SystemTime::now();
        let proof = secrets.proof(ME, "GET", "/_alo/g/k", b"", now);
        let ok = |m: &str, p: &str, body: &[u8], at: SystemTime| {
            verify(&secrets, (m, p, body), Some(&proof), at)
        };
        assert_eq!(ok("GET", "/_alo/g/k", b"", now), Ok(()));
        assert_eq!(
            ok("GET", "/_alo/g/other", b"", now),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            ok("HEAD", "/_alo/g/k", b"", now),
            Err(Refused::BadSignature)
        );
        let late = now + Duration::from_secs(31);
        assert_eq!(
            ok("GET", "/_alo/g/k", b"", late),
            Err(Refused::OutsideWindow)
        );
        assert_eq!(
            ok("GET", "/_alo/g/k", b"", now + Duration::from_secs(29)),
            Ok(())
        );
        assert_eq!(
            ok("GET", "/_alo/g/k", b"x", now),
            Err(Refused::BodyMismatch)
        );
        assert_eq!(
            verify(&secrets, ("GET", "/_alo/g/k", b""), None, now),
            Err(Refused::Missing)
        );
        let bad = "t=1,sig=zz";
        assert_eq!(
            verify(&secrets, ("GET", "/_alo/g/k", b""), Some(bad), now),
            Err(Refused::Malformed)
        );
        // Reads stay replayable within the window.
        assert_eq!(ok("GET", "/_alo/g/k", b"", now), Ok(()));
    }

    #[test]
    fn a_signed_write_applies_once_however_often_it_is_sent() {
        let receiver = PeerSecrets::new([A]).expect("valid");
        let sender = PeerSecrets::new([A]).expect("valid");
        let now = SystemTime::now();
        let put = ("PUT", "/_alo/g/k", &b"v1"[..]);
        let first = sender.proof(ME, put.0, put.1, put.2, now);
        let second = sender.proof(ME, put.0, put.1, put.2, now);
        assert_ne!(first, second, "each write has its own sequence number");
        assert_eq!(verify(&receiver, put, Some(&first), now), Ok(()));
        assert_eq!(
            verify(&receiver, put, Some(&first), now),
            Err(Refused::Replayed)
        );
        assert_eq!(verify(&receiver, put, Some(&second), now), Ok(()));
        // A batch get is a read; a batch remove a write.
        let get = sender.proof(ME, "POST", "/_alo/g?get", b"k\n", now);
        for _ in 0..2 {
            assert_eq!(
                verify(&receiver, ("POST", "/_alo/g?get", b"k\n"), Some(&get), now),
                Ok(())
            );
        }
        let remove = sender.proof(ME, "POST", "/_alo/g", b"k\n", now);
        assert_eq!(
            verify(&receiver, ("POST", "/_alo/g", b"k\n"), Some(&remove), now),
            Ok(())
        );
        assert_eq!(
            verify(&receiver, ("POST", "/_alo/g", b"k\n"), Some(&remove), now),
            Err(Refused::Replayed)
        );
    }

    #[test]
    fn a_proof_is_good_at_the_member_it_was_made_for_only() {
        let (sender, other) = (
            PeerSecrets::new([A]).expect("valid"),
            PeerSecrets::new([A]).expect("valid"),
        );
        let now = SystemTime::now();
        for (method, path) in [("PUT", "/_alo/g/k"), ("GET", "/_alo/g/k")] {
            let proof = sender.proof("http://10.0.0.2:8001", method, path, b"", now);
            let header = Some(proof.as_bytes());
            assert_eq!(
                other.check_head(ME, method, path, header, now).err(),
                Some(Refused::BadSignature),
                "{method}"
            );
            assert!(
                other
                    .check_head("http://10.0.0.2:8001", method, path, header, now)
                    .is_ok()
            );
        }
    }

    #[test]
    fn a_replay_is_refused_from_its_head_before_its_body_is_read() {
        let secrets = PeerSecrets::new([A]).expect("valid");
        let now = SystemTime::now();
        let proof = secrets.proof(ME, "DELETE", "/_alo/g", b"", now);
        let proven = secrets
            .check_head(ME, "DELETE", "/_alo/g", Some(proof.as_bytes()), now)
            .expect("proven");
        // Two copies sent at once pass the head; the body check takes the number once.
        let again = secrets
            .check_head(ME, "DELETE", "/_alo/g", Some(proof.as_bytes()), now)
            .expect("not applied yet");
        assert_eq!(secrets.check_body(&proven, b"", now), Ok(()));
        assert_eq!(secrets.check_body(&again, b"", now), Err(Refused::Replayed));
        assert_eq!(
            secrets
                .check_head(ME, "DELETE", "/_alo/g", Some(proof.as_bytes()), now)
                .err(),
            Some(Refused::Replayed)
        );
    }

    #[test]
    fn writes_signed_before_the_receiver_started_are_refused() {
        let sender = PeerSecrets::new([A]).expect("valid");
        let receiver = PeerSecrets::new([A]).expect("valid");
        let before = SystemTime::now() - Duration::from_secs(5);
        let put = ("PUT", "/_alo/g/k", &b"v"[..]);
        let proof = sender.proof(ME, put.0, put.1, put.2, before);
        assert_eq!(
            verify(&receiver, put, Some(&proof), SystemTime::now()),
            Err(Refused::BeforeStart)
        );
    }

    #[test]
    fn the_window_takes_writes_out_of_order_and_refuses_those_too_old_to_tell() {
        let mut seen = Seen::new();
        assert!(seen.insert(5));
        assert!(seen.insert(3), "late, not seen");
        assert!(!seen.insert(3));
        assert!(!seen.insert(5));
        assert!(seen.insert(5 + WRITES_REMEMBERED - 1));
        assert!(!seen.insert(4), "fell out of the window");
        assert!(seen.insert(5 + WRITES_REMEMBERED), "new again");
        assert!(!seen.insert(5 + WRITES_REMEMBERED - 1));
        let w = WRITES_REMEMBERED;
        assert!(seen.insert(100 * w));
        assert!(seen.insert(100 * w - 2), "late, not seen");
        assert!(
            seen.insert(101 * w - 1),
            "the top moves on by less than the window"
        );
        assert!(
            seen.insert(101 * w - 2),
            "a bit set for an older number does not pass for this one"
        );
        assert!(!seen.insert(101 * w - 2));
    }

    #[test]
    fn during_a_rotation_both_secrets_are_accepted() {
        let now = SystemTime::now();
        let old = PeerSecrets::new([A]).expect("valid");
        let new = PeerSecrets::new([B]).expect("valid");
        let both =
            PeerSecrets::from_lines("# rotating\n  0123456789abcdef-b \n\n0123456789abcdef-a\n")
                .expect("valid");
        for signer in [&old, &new] {
            let proof = signer.proof(ME, "GET", "/p", b"", now);
            assert_eq!(verify(&both, ("GET", "/p", b""), Some(&proof), now), Ok(()));
        }
        let proof = new.proof(ME, "GET", "/p", b"", now);
        assert_eq!(
            verify(&old, ("GET", "/p", b""), Some(&proof), now),
            Err(Refused::BadSignature)
        );
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(PeerSecrets::new(Vec::<&[u8]>::new()).is_err());
        assert!(PeerSecrets::new([b"short".as_slice()]).is_err());
        assert!(PeerSecrets::new([A, B, A]).is_err());
        assert!(PeerSecrets::from_lines("# nothing\n").is_err());
        assert!(!format!("{:?}", PeerSecrets::new([A]).expect("valid")).contains("0123"));
    }

    #[test]
    fn the_empty_digest_is_the_digest_of_nothing() {
        assert_eq!(hex::encode(Sha256::digest(b"")), EMPTY_DIGEST);
    }
}
