//! What can go wrong setting up or serving the HTTP transport.

/// Errors of the HTTP transport's setup and server. (Peer requests that fail do not surface
/// here: a group counts them and loads the key itself.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node URL that cannot be used: it must be `http://host:port` with no path, query or
    /// fragment (a trailing `/` is fine).
    #[error("invalid node URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A membership that leaves this node out.
    #[error(
        "this node ({self_url}) is not among the members {members:?}: list it, under the same name"
    )]
    NotAMember {
        /// This node's URL, normalized.
        self_url: String,
        /// The members given, normalized.
        members: Vec<String>,
    },
    /// The base path must start and end with `/`, e.g. `/_alo/`.
    #[error("invalid base path {0:?}: it must start and end with '/'")]
    InvalidBasePath(String),
    /// Peer secrets that cannot be used; what is wrong with them.
    #[error("invalid peer secret: {0}")]
    InvalidSecret(&'static str),
    /// A server limit that cannot be used; what is wrong with it.
    #[error("invalid server limit: {0}")]
    InvalidLimit(&'static str),
    /// Accepting connections failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}
