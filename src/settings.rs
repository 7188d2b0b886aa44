//! The reloadable state: the configuration and everything compiled from it (protections,
//! Cache-Control rules), replaced as a whole on SIGHUP. Workers hold their own reference and pick
//! up a new generation at their next request or accept: one relaxed atomic load on the request
//! path, no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use http::HeaderValue;

use crate::config::Config;
use crate::protect::Protection;

/// One generation of settings.
pub struct Settings {
    pub config: Config,
    pub protect: Protection,
    pub cache_rules: CacheRules,
    /// `None` when the access log is off.
    pub access_log: Option<crate::access_log::AccessLog>,
}

/// Cache-Control rules compiled once per generation.
pub struct CacheRules {
    globs: GlobSet,
    values: Vec<HeaderValue>,
}

impl CacheRules {
    /// The Cache-Control value of the first rule matching `rel` (no leading `/`).
    pub fn value_for(&self, rel: &str) -> Option<HeaderValue> {
        if self.values.is_empty() {
            return None;
        }
        let path = format!("/{rel}");
        let first = self.globs.matches(&path).into_iter().min()?;
        Some(self.values[first].clone())
    }
}

impl Settings {
    /// Compile a validated configuration (key files are read here).
    pub fn new(config: Config) -> anyhow::Result<Settings> {
        let mut set = GlobSetBuilder::new();
        let mut values = Vec::new();
        for rule in &config.cache_control {
            set.add(
                GlobBuilder::new(&rule.path)
                    .literal_separator(true)
                    .build()?,
            );
            values.push(HeaderValue::from_str(&rule.value)?);
        }
        let log = &config.access_log;
        let access_log = if log.enabled {
            Some(crate::access_log::AccessLog::open(
                log.format,
                log.path.clone(),
            )?)
        } else {
            None
        };
        Ok(Settings {
            access_log,
            protect: Protection::new(&config)?,
            cache_rules: CacheRules {
                globs: set.build()?,
                values,
            },
            config,
        })
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
