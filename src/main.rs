//! The couchgate binary: configuration, logging, binding, serving.

use clap::Parser;
use couchgate::config::{Args, Config, JwtKey};
use couchgate::{backend::Backend, devbackend, server, tls, Proxy};
use std::process::ExitCode;
use tracing_subscriber::field::MakeExt;

/// sysexits' EX_USAGE: bad configuration.
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    // A command line clap cannot read is bad configuration too: EX_USAGE, not clap's 2.
    // `--help` and `--version` still print and exit 0.
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("couchgate: configuration error: {}", e.reason());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        couchgate::config::LogFormat::Json => logs.json().init(),
        // Colour only on a terminal: logs written to a file stay plain text, with fields
        // written plainly (the default field formatter styles every name, even without
        // colour: a tenth of a small request's CPU went to the access-log line).
        couchgate::config::LogFormat::Text
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) =>
        {
            logs.init()
        }
        couchgate::config::LogFormat::Text => logs
            .with_ansi(false)
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                    if field.name() == "message" {
                        write!(w, "{value:?}")
                    } else {
                        write!(w, "{field}={value:?}")
                    }
                })
                .delimited(" "),
            )
            .init(),
    }

    // Demo mode: a local PouchDB Server and a made-up secret, printed with a token.
    let mut _dev = None;
    let backend_url = match config.couchdb_url.clone() {
        Some(u) => u,
        None => match devbackend::start().await {
            Ok(d) => {
                let url = d.url.clone();
                // The demo's backend lives as long as the process; so does its index.
                config.data_dir.get_or_insert_with(|| d.dir.join("index"));
                _dev = Some(d);
                config.couchdb_url = Some(url.clone());
                config.demo = true;
                url
            }
            Err(e) => {
                eprintln!("couchgate: cannot start the demo backend: {}", e.reason());
                return ExitCode::FAILURE;
            }
        },
    };
    let demo_secret = if _dev.is_some() && config.jwt_key.is_none() {
        let s = devbackend::demo_secret();
        config.jwt_key = Some(JwtKey::Hmac(s.clone().into_bytes()));
        Some(s)
    } else {
        None
    };

    let backend = match Backend::new(&backend_url, &config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("couchgate: configuration error: {}", e.reason());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = backend.ensure_database(config.backend_wait).await {
        eprintln!(
            "couchgate: cannot use the backing database `{}`: {}",
            config.database,
            e.reason()
        );
        return ExitCode::FAILURE;
    }
    let acceptor = match &config.tls {
        Some((cert, key)) => match tls::acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("couchgate: configuration error: {}", e.reason());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("couchgate: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let limits = server::Limits {
        max_connections: config.max_connections,
        shutdown_timeout: config.shutdown_timeout,
        timeouts: couchgate::conns::Timeouts {
            header_read: config.header_read_timeout,
            idle: config.idle_timeout,
        },
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let proxy = match Proxy::new(config, backend) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("couchgate: configuration error: {}", e.reason());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing::info!(%addr, config = ?proxy.state.config, "couchgate started");
    proxy.state.registry.resume_cleanup();
    println!("couchgate listening on {scheme}://{addr}");
    if let Some(secret) = demo_secret {
        match devbackend::demo_token(&secret) {
            Ok(token) => {
                println!("demo mode: backend is an in-memory PouchDB Server at {backend_url}");
                println!("demo token (user `demo`, valid 24 h):\n{token}");
                println!(
                    "try: curl -H \"Authorization: Bearer $TOKEN\" -X PUT {scheme}://{addr}/notes"
                );
            }
            Err(e) => eprintln!("couchgate: cannot make a demo token: {}", e.reason()),
        }
    }
    let state = std::sync::Arc::clone(&proxy.state);
    server::run(listener, proxy, acceptor, limits, server::shutdown_signal()).await;
    if let Err(e) = state.changes.close().await {
        tracing::warn!(error = %e.reason(), "could not close the changes index cleanly");
    }
    ExitCode::SUCCESS
}
