//! A picker given after the groups that use it exist, and swapped while they serve.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use crate::{Peer, PeerPicker};

/// A [`PeerPicker`] whose picker is set later, and may be swapped at any time: for a transport
/// that needs the groups before it can be built (an in-process one that calls them, a server
/// that takes the registry), or a membership that changes by replacing the picker.
///
/// Give the groups an `Arc<LatePicker>` when they are built; until [`set`](LatePicker::set),
/// every key is this node's and writes reach no other member. A swap takes effect for the next
/// load or write; loads already asking a peer finish with it.
///
/// ```
/// use std::sync::Arc;
/// use alo_group::{Groups, LatePicker, Peer, PeerPicker};
///
/// /// A picker that names no peer: a stand-in for a transport's.
/// struct Alone;
/// impl PeerPicker for Alone {
///     fn pick_peer(&self, _key: &[u8]) -> Option<Arc<dyn Peer>> {
///         None
///     }
/// }
///
/// let late = Arc::new(LatePicker::new());
/// let groups = Groups::with_picker(late.clone());
/// // ... create the groups, build the transport with `groups` ...
/// late.set(Arc::new(Alone));
/// # let _ = groups;
/// ```
///
/// Cost: a load or a write takes a read lock that writers rarely hold (one `set` per swap);
/// cache hits never look at the picker.
#[derive(Default)]
pub struct LatePicker {
    picker: RwLock<Option<Arc<dyn PeerPicker>>>,
}

impl LatePicker {
    /// A late picker with no picker yet: every key is this node's.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `picker` the one that names owners, from the next load or write on; returns the
    /// one it replaces.
    pub fn set(&self, picker: Arc<dyn PeerPicker>) -> Option<Arc<dyn PeerPicker>> {
        let mut slot = self.picker.write().unwrap_or_else(PoisonError::into_inner);
        slot.replace(picker)
    }

    /// Takes the picker away (every key is this node's again); returns it.
    pub fn clear(&self) -> Option<Arc<dyn PeerPicker>> {
        let mut slot = self.picker.write().unwrap_or_else(PoisonError::into_inner);
        slot.take()
    }

    /// The picker, read in place: no reference count is touched on the load path.
    fn read(&self) -> RwLockReadGuard<'_, Option<Arc<dyn PeerPicker>>> {
        self.picker.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PeerPicker for LatePicker {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        self.read().as_ref()?.pick_peer(key)
    }

    fn pick_owner(&self, key: &[u8]) -> Option<Arc<dyn Peer>> {
        self.read().as_ref()?.pick_owner(key)
    }

    fn other_members(&self) -> Vec<Arc<dyn Peer>> {
        self.read()
            .as_ref()
            .map(|p| p.other_members())
            .unwrap_or_default()
    }

    fn members(&self) -> usize {
        self.read().as_ref().map_or(1, |p| p.members())
    }
}

impl fmt::Debug for LatePicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatePicker")
            .field("set", &self.read().is_some())
            .finish()
    }
}
