//! `/{db}/_local/{id}`: replication checkpoints and other non-replicated documents, stored as
//! backend `_local` documents under the namespace's own local prefix.

use super::Req;
use crate::body::Body;
use crate::error::Result;
use crate::namespace::Namespace;
use crate::state::State;
use http::Response;

pub async fn handle(st: &State, ns: &Namespace, id: &str, req: Req) -> Result<Response<Body>> {
    // `_local` documents behave as documents without revision history; the document handler
    // serves them (COPY included), with the local id encoding chosen by `Namespace::encode_id`,
    // and records each one it writes (once its body has passed the checks).
    super::doc::handle(st, ns, id, req).await
}
