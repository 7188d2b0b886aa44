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
            Ok(c) => match sendfiled::settings::Settings::check(&c) {
                Ok(endpoints) => {
                    print!("{}", certificate_report(&endpoints));
                    print!("{}", c.to_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&*e),
            },
            Err(e) => fail(&e),
        },
        Command::Sign(args) => match sign(&args) {
            Ok(link) => {
                println!("{link}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Digest(args) => digest(&args),
        Command::GenerateManual { out } => match sendfiled::manual::write_all(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{}: {e}", out.display())),
        },
        Command::Serve(args) => {
            let overrides = Overrides {
                root: args.root,
                listen: args.listen,
                workers: args.workers,
                admin_listen: args.admin_listen,
                drain_delay: args.drain_delay,
                listing: args.listing,
            };
            let config = match Config::load(args.config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            match sendfiled::run(config, overrides) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&*e),
            }
        }
    }
}

fn digest(args: &sendfiled::cli::DigestArgs) -> ExitCode {
    use sendfiled::digest::{tree, Algorithm};
    let mut algorithms = Vec::new();
    for name in &args.algorithms {
        match Algorithm::from_token(name) {
            Some(a) => algorithms.push(a),
            None => return fail(&format!("--algorithm {name}: use sha-256 or sha-512")),
        }
    }
    if algorithms.is_empty() {
        algorithms.push(Algorithm::Sha256);
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let opts = tree::Options {
        root: args.dir.clone(),
        check: args.check,
        algorithms,
        threads,
    };
    match tree::run(&opts) {
        Ok(summary) => {
            println!("{}", summary.line(args.check));
            if summary.all_good() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(&format!("{}: {e}", args.dir.display())),
    }
}

fn sign(args: &sendfiled::cli::SignArgs) -> Result<String, String> {
    use sendfiled::protect::signing::{self, MethodClass, SignRequest};
    let key = signing::read_key_file(&args.key_file)?;
    let ttl = sendfiled::units::parse_duration(&args.expires_in)
        .map_err(|e| format!("--expires-in: {e}"))?;
    let method = match args.method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" => MethodClass::Read,
        "POST" => MethodClass::Post,
        other => return Err(format!("--method: {other:?} is not GET or POST")),
    };
    let mut extra = Vec::new();
    if let Some(rate) = &args.rate {
        let bytes = sendfiled::units::parse_size_text(rate).map_err(|e| format!("--rate: {e}"))?;
        extra.push(("rate".to_string(), bytes.to_string()));
    }
    signing::signed_target(SignRequest {
        key: &key,
        kid: &args.key_id,
        method,
        target: &args.path,
        prefix: args.prefix,
        expires: signing::unix_now() + ttl.as_secs(),
        extra,
    })
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("sendfiled: error: {e:#}");
    ExitCode::from(2)
}

/// One TOML comment line per certificate: its file, serial and expiry (for `check-config`).
fn certificate_report(endpoints: &[sendfiled::tls::Endpoint]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = String::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        for c in &endpoint.certificates {
            let at =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.not_after.max(0) as u64);
            let days = (c.not_after - now).div_euclid(86_400);
            let when = if c.not_after < now {
                format!("EXPIRED {} days ago", -days)
            } else {
                format!("in {days} days")
            };
            out.push_str(&format!(
                "# tls[{i}] certificate {}: serial {}, expires {} ({when})\n",
                c.file.display(),
                c.serial,
                httpdate::fmt_http_date(at),
            ));
        }
    }
    out
}
