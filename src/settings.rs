//! The reloadable state: the configuration and everything compiled from it (protections, TLS
//! endpoints, the access log), replaced as a whole on SIGHUP. Workers hold their own reference and pick
//! up a new generation at their next request or accept: one relaxed atomic load on the request
//! path, no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::protect::Protection;

/// One generation of settings.
pub struct Settings {
    pub config: Config,
    pub protect: Protection,
    /// `None` when the access log is off.
    pub access_log: Option<crate::access_log::AccessLog>,
    /// The `[[tls]]` blocks, compiled (certificates, keys, CA bundles and ticket keys read).
    pub tls: Vec<crate::tls::Endpoint>,
}

impl Settings {
    /// Compile a validated configuration (key files are read here) and open the access log.
    pub fn new(config: Config) -> anyhow::Result<Settings> {
        let protect = Protection::new(&config).map_err(|e| in_file(&config, e))?;
        let tls = compile_tls(&config)?;
        let log = &config.access_log;
        let access_log = if log.enabled {
            let opened = crate::access_log::AccessLog::open(log.format, log.path.clone());
            Some(opened.map_err(|e| keyed(&config, "access_log.path", e))?)
        } else {
            None
        };
        Ok(Settings {
            access_log,
            tls,
            protect,
            config,
        })
    }

    /// Everything [`Settings::new`] checks, without opening the log: what `check-config` runs,
    /// so that it passes exactly the files `serve` and a reload accept.
    pub fn check(config: &Config) -> anyhow::Result<Vec<crate::tls::Endpoint>> {
        Protection::new(config).map_err(|e| in_file(config, e))?;
        compile_tls(config)
    }
}

/// Every `[[tls]]` block, its files read; the error names the block and the file.
fn compile_tls(config: &Config) -> anyhow::Result<Vec<crate::tls::Endpoint>> {
    let compiled = config.tls.iter().enumerate().map(|(i, listener)| {
        crate::tls::compile(listener).map_err(|e| keyed(config, &format!("tls[{i}]"), e))
    });
    compiled.collect()
}

/// An error about `key`, naming the configuration file like every config error.
fn keyed(config: &Config, key: &str, e: impl std::fmt::Display) -> anyhow::Error {
    match &config.source {
        Some(file) => anyhow::anyhow!("{}: key `{key}`: {e}", file.display()),
        None => anyhow::anyhow!("{key}: {e}"),
    }
}

/// An error whose text already names its key, prefixed with the configuration file.
fn in_file(config: &Config, e: anyhow::Error) -> anyhow::Error {
    match &config.source {
        Some(file) => anyhow::anyhow!("{}: {e}", file.display()),
        None => e,
    }
}

/// The current generation, shared by all workers.
pub struct Live {
    current: RwLock<Arc<Settings>>,
    generation: AtomicU64,
}

impl Live {
    /// Start at generation 0 with `settings`.
    pub fn new(settings: Settings) -> Live {
        Live {
            current: RwLock::new(Arc::new(settings)),
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation's number (changes on every replace).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current settings.
    pub fn current(&self) -> Arc<Settings> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Make `settings` current; workers switch at their next request.
    pub fn replace(&self, settings: Settings) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
