//! Differences between couchgate and the backend that are deliberate, each with its reason.
//! The README's table lists the same cases (checked by a test).

/// A case (or a prefix of case names) whose answers differ on purpose.
pub struct Known {
    pub case: &'static str,
    pub reason: &'static str,
    /// Only against PouchDB Server (which differs from CouchDB, the reference, there).
    pub pouchdb_server_only: bool,
}

pub const ALL: &[Known] = &[];

/// The known differences that apply against this backend.
pub fn for_backend(couchdb: bool) -> Vec<&'static Known> {
    ALL.iter()
        .filter(|k| !(couchdb && k.pouchdb_server_only))
        .collect()
}
