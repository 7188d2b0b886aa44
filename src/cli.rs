//! Command-line interface (clap): `serve`, `check-config`.

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
}
