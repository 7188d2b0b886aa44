//! The `sendfiled` binary: parse the command line, load the configuration, run until a signal.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sendfiled::cli::{Cli, Command};
use sendfiled::config::{Config, Overrides};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(Some(&config), &Overrides::default())
        {
            Ok(c) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Serve(args) => {
            let overrides = Overrides {
                root: args.root,
                listen: args.listen,
                workers: args.workers,
            };
            let config = match Config::load(args.config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            match sendfiled::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&*e),
            }
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("sendfiled: error: {e:#}");
    ExitCode::from(2)
}
