//! Configuration: command-line flags, each with an environment variable, and an optional TOML
//! file whose keys are the flags' long names (`couchdb-url = "..."`). A flag or variable beats
//! the file, the file beats the default.

use crate::error::Error;
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can be configured, as given. Every field is optional here so that the
/// command line and the file can be merged; [`Config::resolve`] applies defaults and checks.
#[derive(Debug, Default, Clone, Parser, Serialize, Deserialize)]
#[command(
    name = "couchgate",
    version,
    about = "A CouchDB-compatible authenticating replication proxy: every user syncs with \
             virtual databases of their own, stored in one shared CouchDB database.",
    after_help = "Without --couchdb-url, couchgate starts a local in-memory PouchDB Server \
                  (from conformance/node_modules, installed with npm on first use) and prints \
                  a demo token: a working default for trying it out, not for production."
)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Args {
    /// TOML file with any of these options (keys are the long flag names).
    #[arg(long, env = "COUCHGATE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:5985].
    #[arg(long, env = "COUCHGATE_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Backend CouchDB URL with admin credentials (http://admin:pass@host:5984). Never logged.
    #[arg(long, env = "COUCHGATE_COUCHDB_URL", hide_env_values = true)]
    pub couchdb_url: Option<String>,

    /// The shared backing database, created at start-up if missing [default: couchgate].
    #[arg(long, env = "COUCHGATE_DATABASE")]
    pub database: Option<String>,

    /// HMAC secret for HS256 tokens.
    #[arg(long, env = "COUCHGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with the public key for RS256 or ES256 tokens.
    #[arg(long, env = "COUCHGATE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Claim naming the user [default: sub].
    #[arg(long, env = "COUCHGATE_JWT_USER_CLAIM")]
    pub jwt_user_claim: Option<String>,

    /// Required `iss` claim, if set.
    #[arg(long, env = "COUCHGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, if set.
    #[arg(long, env = "COUCHGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock leeway for `exp`, `nbf` and `iat`, in seconds [default: 30].
    #[arg(long, env = "COUCHGATE_JWT_LEEWAY_SECS")]
    pub jwt_leeway_secs: Option<u64>,

    /// Secret from which sequence tokens are sealed; give every instance of a deployment the same
    /// one [default: derived from the JWT secret or key and the backend URL].
    #[arg(long, env = "COUCHGATE_SEQ_SECRET", hide_env_values = true)]
    pub seq_secret: Option<String>,

    /// Virtual database names users may use: comma-separated names, `prefix*` patterns, or `*`
    /// [default: *].
    #[arg(long, env = "COUCHGATE_ALLOWED_DATABASES")]
    pub allowed_databases: Option<String>,

    /// CORS: comma-separated allowed origins, or `*` [default: CORS off].
    #[arg(long, env = "COUCHGATE_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// CORS: allow credentials (cookies, Authorization) from allowed origins.
    #[arg(long, env = "COUCHGATE_CORS_CREDENTIALS", num_args = 0..=1, default_missing_value = "true")]
    pub cors_credentials: Option<bool>,

    /// Largest request body accepted, in bytes [default: 67108864, 64 MiB].
    #[arg(long, env = "COUCHGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<u64>,

    /// Most client connections served at once [default: 10000].
    #[arg(long, env = "COUCHGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Time the backend has to start answering a request, in seconds [default: 60].
    #[arg(long, env = "COUCHGATE_BACKEND_TIMEOUT_SECS")]
    pub backend_timeout_secs: Option<u64>,

    /// Most idle pooled connections to the backend [default: 64].
    #[arg(long, env = "COUCHGATE_BACKEND_POOL_IDLE")]
    pub backend_pool_idle: Option<usize>,

    /// Time in-flight requests get to finish on SIGTERM/SIGINT, in seconds [default: 10].
    #[arg(long, env = "COUCHGATE_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,

    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "COUCHGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "COUCHGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Where `_changes` rows come from: `index` (a per-namespace index fed by one upstream
    /// follower) or `filter` (each request filters the shared feed) [default: index].
    #[arg(long, env = "COUCHGATE_CHANGES_SOURCE")]
    pub changes_source: Option<ChangesSource>,

    /// File the changes index is persisted to (every minute and at shutdown), so a restart
    /// does not re-read the whole feed [default: not persisted].
    #[arg(long, env = "COUCHGATE_INDEX_SNAPSHOT")]
    pub index_snapshot: Option<PathBuf>,

    /// Log filter, in tracing-subscriber's EnvFilter syntax [default: info].
    #[arg(long, env = "COUCHGATE_LOG")]
    pub log: Option<String>,
}

/// Where `_changes` rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangesSource {
    Index,
    Filter,
}

/// Which names of virtual databases users may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbAllowList {
    Any,
    Patterns(Vec<String>),
}

impl DbAllowList {
    fn parse(s: &str) -> Self {
        let items: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if items.iter().any(|s| s == "*") {
            DbAllowList::Any
        } else {
            DbAllowList::Patterns(items)
        }
    }

    pub fn allows(&self, db: &str) -> bool {
        match self {
            DbAllowList::Any => true,
            DbAllowList::Patterns(p) => p.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => db.starts_with(prefix),
                None => p == db,
            }),
        }
    }
}

/// How tokens are verified.
#[derive(Clone)]
pub enum JwtKey {
    Hmac(Vec<u8>),
    PublicPem(Vec<u8>),
}

/// CORS settings, as CouchDB's `[cors]` section has them.
#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    /// `None`: CORS off. `Some(empty)`: no origin allowed.
    pub origins: Option<Vec<String>>,
    pub credentials: bool,
}

/// The resolved configuration.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None`: demo mode with a local PouchDB Server.
    pub couchdb_url: Option<String>,
    pub database: String,
    pub jwt_key: Option<JwtKey>,
    pub jwt_user_claim: String,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_leeway: Duration,
    pub seq_secret: Option<String>,
    pub allowed_databases: DbAllowList,
    pub cors: CorsConfig,
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub backend_timeout: Duration,
    pub backend_pool_idle: usize,
    pub shutdown_timeout: Duration,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub changes_source: ChangesSource,
    pub index_snapshot: Option<PathBuf>,
    pub log: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets and the backend URL (which carries credentials) are never printed.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("demo_mode", &self.couchdb_url.is_none())
            .field("jwt_user_claim", &self.jwt_user_claim)
            .field("allowed_databases", &self.allowed_databases)
            .field("cors", &self.cors)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .field("changes_source", &self.changes_source)
            .finish_non_exhaustive()
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

impl Config {
    /// Reads flags and environment, then the TOML file they name, if any.
    pub fn from_args(args: Args) -> crate::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                toml::from_str::<Args>(&text)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?
            }
            None => Args::default(),
        };
        Config::resolve(merge(args, file)?)
    }

    /// Applies defaults and checks a merged [`Args`].
    pub fn resolve(a: Args) -> crate::Result<Config> {
        let jwt_key = match (&a.jwt_secret, &a.jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err(bad("give --jwt-secret or --jwt-public-key, not both"))
            }
            (Some(s), None) if s.len() < 16 => {
                return Err(bad("--jwt-secret must be at least 16 bytes long"))
            }
            (Some(s), None) => Some(JwtKey::Hmac(s.as_bytes().to_vec())),
            (None, Some(p)) => Some(JwtKey::PublicPem(std::fs::read(p).map_err(|e| {
                bad(format!("cannot read --jwt-public-key {}: {e}", p.display()))
            })?)),
            (None, None) => None,
        };
        if jwt_key.is_none() && a.couchdb_url.is_some() {
            return Err(bad(
                "a backend is configured but no token key: give --jwt-secret or --jwt-public-key",
            ));
        }
        if let Some(url) = &a.couchdb_url {
            let parsed =
                url::Url::parse(url).map_err(|_| bad("--couchdb-url is not a valid URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("--couchdb-url must be an http or https URL"));
            }
        }
        let database = a.database.unwrap_or_else(|| "couchgate".into());
        crate::routing::validate_db_name(&database)
            .map_err(|e| bad(format!("--database: {}", e.reason())))?;
        let tls = match (a.tls_cert, a.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(bad("--tls-cert and --tls-key go together")),
        };
        let max_connections = a.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            return Err(bad("--max-connections must be at least 1"));
        }
        Ok(Config {
            listen: a
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5985))),
            couchdb_url: a.couchdb_url,
            database,
            jwt_key,
            jwt_user_claim: a.jwt_user_claim.unwrap_or_else(|| "sub".into()),
            jwt_issuer: a.jwt_issuer,
            jwt_audience: a.jwt_audience,
            jwt_leeway: Duration::from_secs(a.jwt_leeway_secs.unwrap_or(30)),
            seq_secret: a.seq_secret,
            allowed_databases: a
                .allowed_databases
                .as_deref()
                .map_or(DbAllowList::Any, DbAllowList::parse),
            cors: CorsConfig {
                origins: a.cors_origins.as_deref().map(|s| {
                    s.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                }),
                credentials: a.cors_credentials.unwrap_or(false),
            },
            max_body_bytes: a.max_body_bytes.unwrap_or(64 * 1024 * 1024),
            max_connections,
            backend_timeout: Duration::from_secs(a.backend_timeout_secs.unwrap_or(60).max(1)),
            backend_pool_idle: a.backend_pool_idle.unwrap_or(64),
            shutdown_timeout: Duration::from_secs(a.shutdown_timeout_secs.unwrap_or(10)),
            tls,
            changes_source: a.changes_source.unwrap_or(ChangesSource::Index),
            index_snapshot: a.index_snapshot,
            log: a.log.unwrap_or_else(|| "info".into()),
        })
    }

    /// The secret sequence tokens are sealed with: explicit, or derived from what every
    /// instance of one deployment shares (token key, backend URL, database).
    pub fn seq_secret(&self) -> Vec<u8> {
        if let Some(s) = &self.seq_secret {
            return s.as_bytes().to_vec();
        }
        let mut out = Vec::new();
        match &self.jwt_key {
            Some(JwtKey::Hmac(k)) | Some(JwtKey::PublicPem(k)) => out.extend_from_slice(k),
            None => {}
        }
        out.push(0);
        out.extend_from_slice(self.couchdb_url.as_deref().unwrap_or("").as_bytes());
        out.push(0);
        out.extend_from_slice(self.database.as_bytes());
        out
    }
}

/// Overlays `cli` (flags and environment) on `file`.
fn merge(cli: Args, file: Args) -> crate::Result<Args> {
    let config = cli.config.clone();
    let mut base = serde_json::to_value(file).map_err(|e| Error::Internal(e.to_string()))?;
    let over = serde_json::to_value(cli).map_err(|e| Error::Internal(e.to_string()))?;
    if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            if !v.is_null() {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    let mut merged: Args = serde_json::from_value(base).map_err(|e| bad(e.to_string()))?;
    merged.config = config;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> crate::Result<Config> {
        let mut v = vec!["couchgate"];
        v.extend_from_slice(args);
        Config::from_args(Args::try_parse_from(v).unwrap())
    }

    #[test]
    fn defaults_and_checks() {
        let c = parse(&[]).unwrap();
        assert!(c.couchdb_url.is_none());
        assert_eq!(c.database, "couchgate");
        assert_eq!(c.max_body_bytes, 64 << 20);
        assert!(
            parse(&["--couchdb-url", "http://x:5984"]).is_err(),
            "no key"
        );
        assert!(parse(&["--jwt-secret", "short"]).is_err());
        assert!(parse(&["--database", "Bad"]).is_err());
        assert!(parse(&["--tls-cert", "a"]).is_err());
        assert!(parse(&[
            "--couchdb-url",
            "ftp://x",
            "--jwt-secret",
            "0123456789abcdef"
        ])
        .is_err());
    }

    #[test]
    fn file_is_overridden_by_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "database = \"fromfile\"\njwt-secret = \"0123456789abcdef\"\nmax-body-bytes = 10\n",
        )
        .unwrap();
        let c = parse(&["--config", path.to_str().unwrap(), "--database", "flag"]).unwrap();
        assert_eq!(c.database, "flag");
        assert_eq!(c.max_body_bytes, 10);
        std::fs::write(&path, "no-such-option = 1\n").unwrap();
        assert!(parse(&["--config", path.to_str().unwrap()]).is_err());
    }

    #[test]
    fn allow_list() {
        let l = DbAllowList::parse("notes, todo-*");
        assert!(l.allows("notes") && l.allows("todo-1") && !l.allows("note"));
        assert_eq!(DbAllowList::parse("a,*"), DbAllowList::Any);
    }
}
