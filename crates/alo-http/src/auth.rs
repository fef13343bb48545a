//! Proof that a peer request comes from a member of the cluster: an HMAC-SHA256, with a secret
//! every member holds, over the request and the time it was sent.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Error;

/// The header that carries a request's proof: `t=<unix seconds>,sig=<hex HMAC-SHA256>`.
pub const AUTH_HEADER: &str = "x-alo-auth";

/// How far a proof's time may be from the server's clock, either way: a captured request can
/// be replayed within this window only.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(30);

/// The shortest secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The cluster's shared secrets: the first signs this node's requests, and a request signed
/// with any of them is accepted, so a secret can be rotated without downtime (add the new one
/// second everywhere, then first, then drop the old one).
///
/// The proof of a request is HMAC-SHA256 with the secret over
/// `{METHOD}\n{path and query}\n{unix seconds}\n{hex SHA-256 of the body}` (the body of a `GET` is
/// empty), sent as `x-alo-auth: t={unix seconds},sig={hex}` and checked in constant time.
#[derive(Clone)]
pub struct PeerSecrets {
    keys: Arc<[Vec<u8>]>,
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
        Ok(PeerSecrets { keys: keys.into() })
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

    /// The `x-alo-auth` value for a request of `method` to `path` (with its query) carrying
    /// `body`, sent at `at`.
    pub fn proof(&self, method: &str, path: &str, body: &[u8], at: SystemTime) -> String {
        let t = unix_seconds(at);
        let mac = self.mac(&self.keys[0], method, path, t, body);
        let sig = hex::encode(mac.finalize().into_bytes());
        format!("t={t},sig={sig}")
    }

    /// Whether `proof` (the header's value, if any) proves the request at `now`.
    pub(crate) fn verify(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        proof: Option<&[u8]>,
        now: SystemTime,
    ) -> bool {
        let Some((t, sig)) = proof.and_then(parse) else {
            return false;
        };
        if unix_seconds(now).abs_diff(t) > REPLAY_WINDOW.as_secs() {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        self.keys.iter().any(|key| {
            self.mac(key, method, path, t, body)
                .verify_slice(&sig)
                .is_ok()
        })
    }

    fn mac(&self, key: &[u8], method: &str, path: &str, t: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        let digest = hex::encode(Sha256::digest(body));
        mac.update(format!("{method}\n{path}\n{t}\n{digest}").as_bytes());
        mac
    }
}

/// `t=<secs>,sig=<hex>`.
fn parse(value: &[u8]) -> Option<(u64, &str)> {
    let value = std::str::from_utf8(value).ok()?;
    let (t, sig) = value.split_once(',')?;
    let t = t.strip_prefix("t=")?.parse().ok()?;
    Some((t, sig.strip_prefix("sig=")?))
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl fmt::Debug for PeerSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSecrets")
            .field("secrets", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"0123456789abcdef-a";
    const B: &[u8] = b"0123456789abcdef-b";

    #[test]
    fn a_proof_verifies_for_its_request_only_and_within_the_window() {
        let secrets = PeerSecrets::new([A]).expect("valid");
        let now = SystemTime::now();
        let proof = secrets.proof("GET", "/_alo/g/k", b"", now);
        let ok = |m: &str, p: &str, at: SystemTime| {
            secrets.verify(m, p, b"", Some(proof.as_bytes()), at)
        };
        assert!(ok("GET", "/_alo/g/k", now));
        assert!(!ok("GET", "/_alo/g/other", now), "another path");
        assert!(!ok("HEAD", "/_alo/g/k", now), "another method");
        assert!(
            !ok("GET", "/_alo/g/k", now + Duration::from_secs(31)),
            "stale"
        );
        assert!(ok("GET", "/_alo/g/k", now + Duration::from_secs(29)));
        assert!(
            !secrets.verify("GET", "/_alo/g/k", b"x", Some(proof.as_bytes()), now),
            "a body"
        );
        assert!(!secrets.verify("GET", "/_alo/g/k", b"", None, now));
        assert!(!secrets.verify("GET", "/_alo/g/k", b"", Some(b"t=1,sig=zz"), now));
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
            let proof = signer.proof("GET", "/p", b"", now);
            assert!(both.verify("GET", "/p", b"", Some(proof.as_bytes()), now));
        }
        let proof = new.proof("GET", "/p", b"", now);
        assert!(!old.verify("GET", "/p", b"", Some(proof.as_bytes()), now));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(PeerSecrets::new(Vec::<&[u8]>::new()).is_err());
        assert!(PeerSecrets::new([b"short".as_slice()]).is_err());
        assert!(PeerSecrets::new([A, B, A]).is_err());
        assert!(PeerSecrets::from_lines("# nothing\n").is_err());
        assert!(!format!("{:?}", PeerSecrets::new([A]).expect("valid")).contains("0123"));
    }
}
