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

    /// Create the shared database as a CouchDB *partitioned* database (when couchgate creates
    /// it): every namespace is one partition, and `_find` runs over that partition only.
    #[arg(long, env = "COUCHGATE_PARTITIONED", num_args = 0..=1, default_missing_value = "true")]
    pub partitioned: Option<bool>,

    /// HMAC secret for HS256/384/512 tokens.
    #[arg(long, env = "COUCHGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Files with token verification keys, comma-separated: each a PEM public key (RSA, EC
    /// P-256/P-384 or Ed25519), a JWK or a JWKS.
    #[arg(long, env = "COUCHGATE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,

    /// JWKS URLs of identity providers, comma-separated (https, or http on loopback only).
    #[arg(long, env = "COUCHGATE_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Least time between two JWKS fetches caused by tokens with an unknown `kid`, in seconds
    /// [default: 30].
    #[arg(long, env = "COUCHGATE_JWKS_MIN_REFRESH_SECS")]
    pub jwks_min_refresh_secs: Option<u64>,

    /// Token algorithms accepted, comma-separated [default: every supported one: RS256, RS384,
    /// RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512]. Each key is
    /// further limited to the algorithms of its type (and to its JWK `alg`).
    #[arg(long, env = "COUCHGATE_JWT_ALGORITHMS")]
    pub jwt_algorithms: Option<String>,

    /// Claim naming the user; a dotted path reaches into objects (`user.name`) [default: sub].
    #[arg(long, env = "COUCHGATE_JWT_USER_CLAIM")]
    pub jwt_user_claim: Option<String>,

    /// Claims holding the roles, comma-separated, the first present wins; dotted paths reach
    /// into objects (`realm_access.roles`) [default: _couchdb.roles,roles].
    #[arg(long, env = "COUCHGATE_JWT_ROLES_CLAIM")]
    pub jwt_roles_claim: Option<String>,

    /// Accepted `iss` values, comma-separated; when set, tokens must carry one of them.
    #[arg(long, env = "COUCHGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Accepted `aud` values, comma-separated; when set, tokens must carry one of them.
    #[arg(long, env = "COUCHGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock leeway for `exp`, `nbf` and `iat`, in seconds [default: 30].
    #[arg(long, env = "COUCHGATE_JWT_LEEWAY_SECS")]
    pub jwt_leeway_secs: Option<u64>,

    /// Accept `Authorization: Basic` and name/password sessions, checked by the backend's
    /// `_session` against its `_users` database.
    #[arg(long, env = "COUCHGATE_BASIC_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub basic_auth: Option<bool>,

    /// How long a successful name/password check is remembered, in seconds [default: 60].
    #[arg(long, env = "COUCHGATE_BASIC_AUTH_CACHE_SECS")]
    pub basic_auth_cache_secs: Option<u64>,

    /// Key signing `AuthSession` cookies; give every instance the same one [default: derived
    /// like --seq-secret, or random when nothing secret is configured].
    #[arg(long, env = "COUCHGATE_SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Option<String>,

    /// Lifetime of an `AuthSession` cookie, renewed while in use, in seconds; never beyond
    /// the expiry of the token that opened the session [default: 600].
    #[arg(long, env = "COUCHGATE_SESSION_TTL_SECS")]
    pub session_ttl_secs: Option<u64>,

    /// `SameSite` attribute of the session cookie: strict, lax or none [default: lax].
    #[arg(long, env = "COUCHGATE_SESSION_SAME_SITE")]
    pub session_same_site: Option<SameSite>,

    /// Role whose members may act for another user named in the --act-as-header header.
    #[arg(long, env = "COUCHGATE_SERVICE_ROLE")]
    pub service_role: Option<String>,

    /// Header in which a service names the user it acts for [default: X-Couchgate-User].
    #[arg(long, env = "COUCHGATE_ACT_AS_HEADER")]
    pub act_as_header: Option<String>,

    /// Role whose members may only read: every write answers 403.
    #[arg(long, env = "COUCHGATE_READ_ONLY_ROLE")]
    pub read_only_role: Option<String>,

    /// Failed password checks allowed per client address per minute; 0: no limit
    /// [default: 30].
    #[arg(long, env = "COUCHGATE_AUTH_FAILURES_PER_ADDRESS")]
    pub auth_failures_per_address: Option<u32>,

    /// Failed password checks allowed per user name per minute; 0: no limit [default: 10].
    #[arg(long, env = "COUCHGATE_AUTH_FAILURES_PER_USER")]
    pub auth_failures_per_user: Option<u32>,

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

    /// How long startup keeps retrying a backend that is down, slow or still starting, in
    /// seconds, before giving up [default: 60].
    #[arg(long, env = "COUCHGATE_BACKEND_WAIT_SECS")]
    pub backend_wait_secs: Option<u64>,

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

    /// Directory for the changes index (one file per backing database) [default:
    /// `$XDG_STATE_HOME/couchgate`, else `~/.local/state/couchgate`; the demo backend's own
    /// temporary folder in demo mode].
    #[arg(long, env = "COUCHGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Memory the changes index may use to cache its file, in MiB [default: 64].
    #[arg(long, env = "COUCHGATE_INDEX_CACHE_MIB")]
    pub index_cache_mib: Option<u64>,

    /// How long a `_changes` request waits for a changes index that is still being built for
    /// the first time before it gets 503, in seconds [default: 30].
    #[arg(long, env = "COUCHGATE_CHANGES_READY_WAIT_SECS")]
    pub changes_ready_wait_secs: Option<u64>,

    /// Log filter, in tracing-subscriber's EnvFilter syntax [default: info]. The access log
    /// (a line per request) is the `couchgate::access` target: `info,couchgate::access=off`
    /// turns it off.
    #[arg(long, env = "COUCHGATE_LOG")]
    pub log: Option<String>,

    /// Log line format: text or json (one JSON object per line) [default: text].
    #[arg(long, env = "COUCHGATE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Time a client has to send a request's line and headers, counted from connecting (TLS
    /// handshake included) or from the first byte of a request on a kept-alive connection, in
    /// seconds [default: 10].
    #[arg(long, env = "COUCHGATE_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,

    /// How long a connection may stay open between requests, in seconds [default: 75].
    #[arg(long, env = "COUCHGATE_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,

    /// Longest pause while a request body arrives, in seconds; the request then gets 408
    /// [default: 30].
    #[arg(long, env = "COUCHGATE_BODY_READ_TIMEOUT_SECS")]
    pub body_read_timeout_secs: Option<u64>,

    /// Basic-auth names and token users are the same people (the token issuer names users as
    /// the backend's `_users` does): allows --basic-auth beside token keys.
    #[arg(long, env = "COUCHGATE_SHARED_IDENTITIES", num_args = 0..=1, default_missing_value = "true")]
    pub shared_identities: Option<bool>,
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

/// The HMAC token key given with `--jwt-secret` (demo mode makes one up).
#[derive(Clone)]
pub enum JwtKey {
    Hmac(Vec<u8>),
}

/// A file of verification keys (`--jwt-public-key`), read at start-up.
#[derive(Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `SameSite` of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// Authentication settings beyond the token keys.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwks_urls: Vec<String>,
    pub jwks_min_refresh: Duration,
    /// `None`: every supported algorithm.
    pub algorithms: Option<Vec<jsonwebtoken::Algorithm>>,
    pub roles_claims: Vec<String>,
    pub basic: bool,
    pub basic_cache: Duration,
    pub session_secret: Option<String>,
    pub session_ttl: Duration,
    pub same_site: SameSite,
    pub service_role: Option<String>,
    pub act_as_header: http::HeaderName,
    pub read_only_role: Option<String>,
    pub failures_per_address: u32,
    pub failures_per_user: u32,
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
    /// `None`: demo mode with a local PouchDB Server (whose URL is filled in here once it
    /// runs; `demo` stays true).
    pub couchdb_url: Option<String>,
    /// Demo mode: no CouchDB URL was given.
    pub demo: bool,
    pub database: String,
    /// Create the shared database partitioned.
    pub partitioned: bool,
    pub jwt_key: Option<JwtKey>,
    pub jwt_key_files: Vec<KeyFile>,
    pub jwt_user_claim: String,
    /// Accepted `iss` values; empty: not checked.
    pub jwt_issuers: Vec<String>,
    /// Accepted `aud` values; empty: not checked.
    pub jwt_audiences: Vec<String>,
    pub jwt_leeway: Duration,
    pub auth: AuthConfig,
    pub seq_secret: Option<String>,
    pub allowed_databases: DbAllowList,
    pub cors: CorsConfig,
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub backend_timeout: Duration,
    pub backend_wait: Duration,
    pub backend_pool_idle: usize,
    pub shutdown_timeout: Duration,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `None`: the default, chosen at start (see [`Config::data_dir`]).
    pub data_dir: Option<PathBuf>,
    pub index_cache_bytes: usize,
    pub changes_ready_wait: Duration,
    pub log: String,
    pub log_format: LogFormat,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets and the backend URL (which carries credentials) are never printed.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("demo_mode", &(self.demo || self.couchdb_url.is_none()))
            .field("jwt_user_claim", &self.jwt_user_claim)
            .field("jwks_urls", &self.auth.jwks_urls.len())
            .field("basic_auth", &self.auth.basic)
            .field("allowed_databases", &self.allowed_databases)
            .field("cors", &self.cors)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .field("data_dir", &self.data_dir)
            .field("index_cache_bytes", &self.index_cache_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
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
        let jwt_key = match &a.jwt_secret {
            Some(s) if s.len() < 16 => {
                return Err(bad("--jwt-secret must be at least 16 bytes long"))
            }
            Some(s) => Some(JwtKey::Hmac(s.as_bytes().to_vec())),
            None => None,
        };
        let jwt_key_files = list(a.jwt_public_key.as_deref())
            .into_iter()
            .map(|p| {
                let path = PathBuf::from(&p);
                std::fs::read(&path)
                    .map(|bytes| KeyFile {
                        path: path.clone(),
                        bytes,
                    })
                    .map_err(|e| bad(format!("cannot read --jwt-public-key {p}: {e}")))
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let auth = auth_config(&a)?;
        let index_cache_bytes = match a.index_cache_mib {
            None => 64 << 20,
            Some(0) => return Err(bad("--index-cache-mib must be at least 1")),
            Some(n) => usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        };
        if jwt_key.is_none()
            && jwt_key_files.is_empty()
            && auth.jwks_urls.is_empty()
            && !auth.basic
            && a.couchdb_url.is_some()
        {
            return Err(bad(
                "a backend is configured but no way to authenticate: give --jwt-secret, \
                 --jwt-public-key, --jwks-url or --basic-auth",
            ));
        }
        if let Some(url) = &a.couchdb_url {
            let parsed =
                url::Url::parse(url).map_err(|_| bad("--couchdb-url is not a valid URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("--couchdb-url must be an http or https URL"));
            }
        }
        refuse_weak(&a, &jwt_key, &jwt_key_files, &auth)?;
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
        let header_read_timeout =
            positive_secs(a.header_read_timeout_secs, 10, "--header-read-timeout-secs")?;
        let idle_timeout = positive_secs(a.idle_timeout_secs, 75, "--idle-timeout-secs")?;
        let body_read_timeout =
            positive_secs(a.body_read_timeout_secs, 30, "--body-read-timeout-secs")?;
        Ok(Config {
            listen: a
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5985))),
            couchdb_url: a.couchdb_url,
            database,
            partitioned: a.partitioned.unwrap_or(false),
            demo: false,
            jwt_key,
            jwt_key_files,
            jwt_user_claim: a.jwt_user_claim.unwrap_or_else(|| "sub".into()),
            jwt_issuers: list(a.jwt_issuer.as_deref()),
            jwt_audiences: list(a.jwt_audience.as_deref()),
            jwt_leeway: secs(a.jwt_leeway_secs, 30),
            auth,
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
            backend_timeout: secs(a.backend_timeout_secs, 60).max(Duration::from_secs(1)),
            backend_wait: secs(a.backend_wait_secs, 60),
            backend_pool_idle: a.backend_pool_idle.unwrap_or(64),
            shutdown_timeout: secs(a.shutdown_timeout_secs, 10),
            tls,
            data_dir: a.data_dir,
            index_cache_bytes,
            changes_ready_wait: secs(a.changes_ready_wait_secs, 30),
            log: a.log.unwrap_or_else(|| "info".into()),
            log_format: a.log_format.unwrap_or(LogFormat::Text),
            header_read_timeout,
            idle_timeout,
            body_read_timeout,
        })
    }

    /// The secret sequence tokens are sealed with: explicit, or derived from what every
    /// instance of one deployment shares (token key, backend URL, database).
    pub fn seq_secret(&self) -> Vec<u8> {
        if let Some(s) = &self.seq_secret {
            return s.as_bytes().to_vec();
        }
        let mut out = Vec::new();
        if let Some(JwtKey::Hmac(k)) = &self.jwt_key {
            out.extend_from_slice(k);
        }
        for f in &self.jwt_key_files {
            out.extend_from_slice(&f.bytes);
        }
        out.push(0);
        out.extend_from_slice(self.couchdb_url.as_deref().unwrap_or("").as_bytes());
        out.push(0);
        out.extend_from_slice(self.database.as_bytes());
        out
    }
}

/// Durations given in seconds are held to this (ten years), so no deadline or clock value
/// computed from one can overflow.
const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// A duration option in seconds, with its default, held to [`MAX_SECS`].
fn secs(v: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(v.unwrap_or(default).min(MAX_SECS))
}

/// Like [`secs`], for a timeout that must not be zero.
fn positive_secs(v: Option<u64>, default: u64, flag: &str) -> crate::Result<Duration> {
    match secs(v, default) {
        d if d.is_zero() => Err(bad(format!("{flag} must be at least 1"))),
        d => Ok(d),
    }
}

/// Refuses configurations that would run but are unsafe.
fn refuse_weak(
    a: &Args,
    jwt_key: &Option<JwtKey>,
    jwt_key_files: &[KeyFile],
    auth: &AuthConfig,
) -> crate::Result<()> {
    if matches!(&a.seq_secret, Some(s) if s.len() < 16) {
        return Err(bad("--seq-secret must be at least 16 bytes long"));
    }
    // Sequence tokens are sealed with a key derived from what the instances of a deployment
    // share; public keys and a URL without a password are known to anyone, and so would be
    // the key. (Demo mode makes up an HMAC secret later.)
    let backend_password = a
        .couchdb_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| u.password().is_some());
    if a.couchdb_url.is_some() && a.seq_secret.is_none() && jwt_key.is_none() && !backend_password {
        return Err(bad(
            "nothing secret is configured to seal sequence tokens with (public token keys and \
             a backend URL without a password are known to anyone): give --seq-secret, the \
             same on every instance",
        ));
    }
    if a.cors_credentials == Some(true) && list(a.cors_origins.as_deref()).iter().any(|o| o == "*")
    {
        return Err(bad(
            "--cors-origins '*' with --cors-credentials would let every web site send \
             requests with its visitors' credentials: list the allowed origins",
        ));
    }
    let tokens = jwt_key.is_some() || !jwt_key_files.is_empty() || !auth.jwks_urls.is_empty();
    if auth.basic && tokens && a.shared_identities != Some(true) {
        return Err(bad(
            "--basic-auth beside token keys puts backend `_users` names and token users in \
             one namespace: a token naming `alice` reaches the data of the CouchDB user \
             `alice`. Give --shared-identities when the token issuer names users as `_users` \
             does, or use only one of them",
        ));
    }
    Ok(())
}

/// A comma-separated list, trimmed, without empty items.
fn list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn auth_config(a: &Args) -> crate::Result<AuthConfig> {
    let jwks_urls = list(a.jwks_url.as_deref());
    for u in &jwks_urls {
        let url = url::Url::parse(u).map_err(|_| bad(format!("--jwks-url {u} is not a URL")))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            return Err(bad(format!(
                "--jwks-url {u}: keys must be fetched over https (http only on loopback)"
            )));
        }
    }
    let algorithms = match a.jwt_algorithms.as_deref() {
        None => None,
        Some(s) => Some(
            list(Some(s))
                .iter()
                .map(|name| {
                    name.parse::<jsonwebtoken::Algorithm>().map_err(|_| {
                        bad(format!(
                            "--jwt-algorithms: `{name}` is not a supported algorithm \
                             (`none` never is)"
                        ))
                    })
                })
                .collect::<crate::Result<Vec<_>>>()?,
        ),
    };
    let mut roles_claims = list(a.jwt_roles_claim.as_deref());
    if roles_claims.is_empty() {
        roles_claims = vec!["_couchdb.roles".into(), "roles".into()];
    }
    let act_as_header = a
        .act_as_header
        .as_deref()
        .unwrap_or("X-Couchgate-User")
        .parse::<http::HeaderName>()
        .map_err(|_| bad("--act-as-header is not a valid header name"))?;
    if matches!(&a.session_secret, Some(s) if s.len() < 16) {
        return Err(bad("--session-secret must be at least 16 bytes long"));
    }
    Ok(AuthConfig {
        jwks_urls,
        jwks_min_refresh: secs(a.jwks_min_refresh_secs, 30),
        algorithms,
        roles_claims,
        basic: a.basic_auth.unwrap_or(false),
        basic_cache: secs(a.basic_auth_cache_secs, 60),
        session_secret: a.session_secret.clone(),
        session_ttl: secs(a.session_ttl_secs, 600).max(Duration::from_secs(1)),
        same_site: a.session_same_site.unwrap_or(SameSite::Lax),
        service_role: a.service_role.clone().filter(|r| !r.is_empty()),
        act_as_header,
        read_only_role: a.read_only_role.clone().filter(|r| !r.is_empty()),
        failures_per_address: a.auth_failures_per_address.unwrap_or(30),
        failures_per_user: a.auth_failures_per_user.unwrap_or(10),
    })
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
        assert_eq!(c.index_cache_bytes, 64 << 20);
        assert!(parse(&["--index-cache-mib", "0"]).is_err());
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
    fn auth_options() {
        let c = parse(&[
            "--jwt-issuer",
            "a, b",
            "--jwt-algorithms",
            "RS256,ES256",
            "--jwt-roles-claim",
            "realm_access.roles",
        ])
        .unwrap();
        assert_eq!(c.jwt_issuers, ["a", "b"]);
        assert_eq!(c.auth.roles_claims, ["realm_access.roles"]);
        assert_eq!(c.auth.algorithms.unwrap().len(), 2);
        assert_eq!(parse(&[]).unwrap().auth.roles_claims.len(), 2);
        assert!(parse(&["--jwt-algorithms", "none"]).is_err());
        assert!(parse(&["--jwks-url", "http://idp.example/jwks"]).is_err());
        assert!(parse(&["--jwks-url", "https://idp.example/jwks"]).is_ok());
        assert!(parse(&["--jwks-url", "http://127.0.0.1:9/jwks"]).is_ok());
        assert!(parse(&["--act-as-header", "bad header"]).is_err());
        assert!(parse(&["--couchdb-url", "http://a:pw@x:5984", "--basic-auth"]).is_ok());
    }

    #[test]
    fn weak_configurations_are_refused() {
        let refused = |args: &[&str], names: &str| {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} was accepted"));
            assert!(e.reason().contains(names), "{args:?}: {}", e.reason());
        };
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ec256.pub.pem");
        // Only public material to derive the sequence secret from.
        refused(
            &["--couchdb-url", "http://x:5984", "--jwt-public-key", key],
            "--seq-secret",
        );
        refused(
            &[
                "--couchdb-url",
                "http://x:5984",
                "--jwks-url",
                "https://idp.example/k",
            ],
            "--seq-secret",
        );
        refused(
            &["--couchdb-url", "http://x:5984", "--basic-auth"],
            "--seq-secret",
        );
        for secret in [
            &["--seq-secret", "0123456789abcdef"][..],
            &["--jwt-secret", "0123456789abcdef"],
        ] {
            let mut args = vec!["--couchdb-url", "http://x:5984", "--jwt-public-key", key];
            args.extend_from_slice(secret);
            assert!(parse(&args).is_ok(), "{args:?}");
        }
        assert!(parse(&[
            "--couchdb-url",
            "http://a:pw@x:5984",
            "--jwt-public-key",
            key
        ])
        .is_ok());
        refused(&["--seq-secret", "short"], "--seq-secret");
        refused(
            &[
                "--cors-origins",
                "https://a.example, *",
                "--cors-credentials",
            ],
            "--cors-credentials",
        );
        assert!(parse(&["--cors-origins", "*"]).is_ok());
        assert!(parse(&["--cors-origins", "https://a.example", "--cors-credentials"]).is_ok());
        let both = [
            "--couchdb-url",
            "http://a:pw@x:5984",
            "--basic-auth",
            "--jwt-public-key",
            key,
        ];
        refused(&both, "--shared-identities");
        let mut shared = both.to_vec();
        shared.push("--shared-identities");
        assert!(parse(&shared).is_ok());
        refused(&["--idle-timeout-secs", "0"], "--idle-timeout-secs");
    }

    #[test]
    fn durations_are_bounded() {
        let c = parse(&[
            "--jwt-leeway-secs",
            "18446744073709551615",
            "--session-ttl-secs",
            "18446744073709551615",
            "--backend-wait-secs",
            "18446744073709551615",
        ])
        .unwrap();
        assert_eq!(c.jwt_leeway, Duration::from_secs(MAX_SECS));
        assert_eq!(c.auth.session_ttl, Duration::from_secs(MAX_SECS));
        assert!(std::time::Instant::now()
            .checked_add(c.backend_wait)
            .is_some());
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.header_read_timeout, c.idle_timeout, c.body_read_timeout),
            (
                Duration::from_secs(10),
                Duration::from_secs(75),
                Duration::from_secs(30)
            )
        );
    }

    #[test]
    fn allow_list() {
        let l = DbAllowList::parse("notes, todo-*");
        assert!(l.allows("notes") && l.allows("todo-1") && !l.allows("note"));
        assert_eq!(DbAllowList::parse("a,*"), DbAllowList::Any);
    }
}
