//! Nothing to link: this crate holds the checks of the workspace as a whole, which no one
//! crate's tests can make (`workspace.rs`: every crate README runs as a doc test and can be
//! pasted into a new project, and every crate ships both licence texts). `cargo test
//! --workspace` runs them.
