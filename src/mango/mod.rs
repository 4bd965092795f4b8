//! Mango, CouchDB's query language, as couchgate evaluates it itself: selectors
//! ([`selector`]) checked, normalised and matched exactly as CouchDB 3 does, in CouchDB's
//! collation ([`collate`]), for `filter=_selector` on `_changes`.

pub mod collate;
pub mod confine;
pub mod fields;
pub mod selector;

pub use fields::Fields;
pub use selector::{MangoError, Selector};
