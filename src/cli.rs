//! Command-line interface (clap): `serve`, `check-config`, `sign`, `digest`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// sendfiled: a static-file origin server that sends every file byte with sendfile(2).
#[derive(Debug, Parser)]
#[command(name = "sendfiled", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory tree over HTTP/1.1.
    Serve(ServeArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a signed, expiring link for a path (or a whole folder with --prefix).
    Sign(SignArgs),
    /// Hash every file of a tree and keep the digests in its extended attributes (or, with
    /// --check, verify them); for deploy pipelines.
    Digest(DigestArgs),
    /// Write the manual pages and shell completions under DIR (for packaging).
    #[command(hide = true)]
    GenerateManual {
        /// Where to write man8/, man5/ and completions/
        #[arg(long)]
        out: PathBuf,
    },
}

/// Flags of `digest`.
#[derive(Debug, Args)]
pub struct DigestArgs {
    /// Verify the attributes instead of writing them; exits 1 if any is missing, stale or wrong
    #[arg(long)]
    pub check: bool,
    /// Algorithm to compute (sha-256, sha-512); repeat for several [default: sha-256]
    #[arg(long = "algorithm")]
    pub algorithms: Vec<String>,
    /// Hashing threads [default: available cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// The tree to hash
    pub dir: PathBuf,
}

/// Flags of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// File holding the key (the same file the servers name in [[signing.keys]])
    #[arg(long)]
    pub key_file: PathBuf,
    /// The key's id (its `id` in [[signing.keys]])
    #[arg(long)]
    pub key_id: String,
    /// How long the link stays valid: 30s, 15m, 12h, ...
    #[arg(long, default_value = "15m")]
    pub expires_in: String,
    /// Sign the folder PATH and everything under it, rather than PATH alone
    #[arg(long)]
    pub prefix: bool,
    /// Method class the link allows: GET (also HEAD) or POST (ZIP selections in a body)
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Bandwidth limit to carry in the link, bytes per second (e.g. 2MiB); 0 lifts the limit
    #[arg(long)]
    pub rate: Option<String>,
    /// The path to sign, as in the URL; may carry a query (e.g. '/dir/?download=zip&path=a')
    pub path: String,
}

/// Flags of `serve`; they override the configuration file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory to serve [default: .]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Address to listen on; repeat for several [default: 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Vec<String>,
    /// TOML configuration file (see docs/configuration.md)
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Worker threads, one per core [default: available cores]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Address of the admin listener (/metrics, /healthz, /readyz), or `off` [default: 127.0.0.1:9090]
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// After SIGTERM, how long /readyz fails while the node still serves, before it stops accepting [default: 5s]
    #[arg(long)]
    pub drain_delay: Option<String>,
    /// Turn directory listings on (HTML and JSON; see listing.enabled)
    #[arg(long)]
    pub listing: bool,
}
