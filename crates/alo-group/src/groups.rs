//! A registry of groups by name, for the server that answers peers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::{Error, Getter, Group, PeerPicker};

/// The groups of one node, by name: an ordinary value (a cheap handle, `Arc` inside), not a
/// global, so a process or a test can have as many as it likes.
///
/// Groups created through the registry share its peer picker.
#[derive(Clone, Default)]
pub struct Groups {
    groups: Arc<RwLock<HashMap<String, Group>>>,
    picker: Option<Arc<dyn PeerPicker>>,
}

impl Groups {
    /// An empty registry whose groups load every key themselves.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose groups find keys' owners through `picker`. For a picker that
    /// can only be built once the groups exist, or that is replaced later, pass an
    /// `Arc<`[`LatePicker`](crate::LatePicker)`>` and set it then.
    pub fn with_picker(picker: Arc<dyn PeerPicker>) -> Self {
        Groups {
            groups: Arc::default(),
            picker: Some(picker),
        }
    }

    /// Creates and registers a group of `max_bytes` (0: unbounded) loading through `getter`,
    /// with this registry's picker.
    ///
    /// # Errors
    /// [`Error::EmptyName`], or [`Error::DuplicateGroup`] when the name is taken.
    pub fn create(
        &self,
        name: impl Into<String>,
        max_bytes: usize,
        getter: impl Getter,
    ) -> Result<Group, Error> {
        let mut builder = Group::builder(name, getter).max_bytes(max_bytes);
        if let Some(picker) = &self.picker {
            builder = builder.picker(Arc::clone(picker));
        }
        let group = builder.build()?;
        self.insert(group.clone())?;
        Ok(group)
    }

    /// Registers a group built elsewhere, e.g. with its own picker or seed.
    ///
    /// # Errors
    /// [`Error::DuplicateGroup`] when the name is taken; the registry is unchanged.
    pub fn insert(&self, group: Group) -> Result<(), Error> {
        let mut groups = self.groups.write().unwrap_or_else(PoisonError::into_inner);
        if groups.contains_key(group.name()) {
            return Err(Error::DuplicateGroup(group.name().to_string()));
        }
        groups.insert(group.name().to_string(), group);
        Ok(())
    }

    /// The group called `name`.
    pub fn get(&self, name: &str) -> Option<Group> {
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
        groups.get(name).cloned()
    }

    /// Every group, sorted by name.
    pub fn all(&self) -> Vec<Group> {
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Group> = groups.values().cloned().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.all().iter().map(|g| g.name().to_string()).collect();
        f.debug_struct("Groups")
            .field("groups", &names)
            .field("peers", &self.picker.is_some())
            .finish()
    }
}
