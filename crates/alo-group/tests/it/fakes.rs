//! A counting getter and fake peers that route keys by a fixed rule.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use alo_group::{BoxFuture, Found, Getter, LoadContext, LoadError, Loaded, Peer, PeerPicker};
use bytes::Bytes;

/// Answers `value:<key>` for every key but `missing` and `broken`, and counts its calls.
#[derive(Clone, Default)]
pub(crate) struct Source {
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) keys: Arc<Mutex<Vec<Bytes>>>,
}

impl Source {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Getter for Source {
    fn get(&self, ctx: LoadContext) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        let key = ctx.key().clone();
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.keys.lock().expect("not poisoned").push(key.clone());
        Box::pin(async move {
            match &key[..] {
                b"missing" => Err(LoadError::NotFound),
                b"broken" => Err(LoadError::failed("origin down")),
                _ => Ok(Loaded::new([&b"value:"[..], &key].concat())),
            }
        })
    }
}

/// One fake peer: answers `peer<id>:<key>`, says its load failed for keys starting `broken`,
/// and is unreachable while `failing` is set.
#[derive(Default)]
pub(crate) struct FakePeer {
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) asked: Mutex<Vec<(String, Bytes)>>,
    pub(crate) failing: AtomicBool,
}

impl Peer for FakePeer {
    fn name(&self) -> &str {
        &self.name
    }

    fn get<'a>(
        &'a self,
        group: &'a str,
        key: &'a [u8],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Found, LoadError>> {
        let key = Bytes::copy_from_slice(key);
        self.asked
            .lock()
            .expect("not poisoned")
            .push((group.to_string(), key.clone()));
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                return Err(LoadError::unreachable(format!("peer {} is down", self.id)));
            }
            match &key[..] {
                b"missing" => return Err(LoadError::NotFound),
                k if k.starts_with(b"broken") => {
                    return Err(LoadError::failed(format!("peer {}: origin down", self.id)));
                }
                _ => {}
            }
            let value = [format!("peer{}:", self.id).as_bytes(), &key[..]].concat();
            Ok(Found::new(Bytes::from(value), None))
        })
    }
}

/// Routes a key by its last byte: `b'0'` (and anything that is not a digit 1-3) is ours, a
/// digit 1-3 belongs to that peer.
pub(crate) struct Router {
    pub(crate) peers: Vec<Arc<FakePeer>>,
    pub(crate) picks: AtomicUsize,
}

impl Router {
    pub(crate) fn new() -> Arc<Self> {
        let peers = (1..=3)
            .map(|id| {
                Arc::new(FakePeer {
                    id,
                    name: format!("peer{id}"),
                    ..FakePeer::default()
                })
            })
            .collect();
        Arc::new(Router {
            peers,
            picks: AtomicUsize::new(0),
        })
    }

    /// The peer (1-3) that owns `key`, or `None` for this node.
    pub(crate) fn owner(key: &[u8]) -> Option<usize> {
        match key.last() {
            Some(d @ b'1'..=b'3') => Some(usize::from(d - b'0')),
            _ => None,
        }
    }
}

impl PeerPicker for Router {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        self.picks.fetch_add(1, Ordering::SeqCst);
        Router::owner(key).map(|id| Arc::clone(&self.peers[id - 1]) as Arc<dyn Peer>)
    }
}
