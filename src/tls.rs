//! TLS for client connections: a rustls acceptor from PEM files, offering h2 and HTTP/1.1.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from a PEM certificate chain and a PEM private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let bad = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        Error::bad_request(format!("{what} {}: {e}", p.display()))
    };
    let cert_pem = std::fs::read(cert).map_err(|e| bad("cannot read --tls-cert", cert, &e))?;
    let key_pem = std::fs::read(key).map_err(|e| bad("cannot read --tls-key", key, &e))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("bad certificate in", cert, &e))?;
    if certs.is_empty() {
        return Err(Error::bad_request(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| bad("bad key in", key, &e))?
        .ok_or_else(|| Error::bad_request(format!("no private key in {}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Internal(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| bad("certificate and key do not fit:", cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
