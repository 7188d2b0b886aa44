//! What a reload would take away: the protections the running configuration has and a new one
//! drops, one line each for the reload's warnings.

use super::{Config, DotfileRule, SymlinkRule};

/// The protections `old` has and `new` would drop, one line each, for the reload's warnings.
pub fn dropped_protections(old: &Config, new: &Config) -> Vec<String> {
    let mut dropped = Vec::new();
    for prefix in &old.signing.protected {
        if !new.signing.protected.contains(prefix) {
            dropped.push(format!(
                "signing.protected {prefix:?} is no longer protected"
            ));
        }
    }
    for rule in &old.bandwidth {
        if !new.bandwidth.iter().any(|r| r.prefix == rule.prefix) {
            dropped.push(format!("[[bandwidth]] rule for {:?} removed", rule.prefix));
        }
    }
    let (o, n) = (&old.clients.limits, &new.clients.limits);
    if o.max_connections_per_ip > 0 && n.max_connections_per_ip == 0 {
        dropped.push("clients.max_connections_per_ip turned off".into());
    }
    if o.requests_per_second > 0.0 && n.requests_per_second == 0.0 {
        dropped.push("clients.requests_per_second turned off".into());
    }
    if old.dotfiles == DotfileRule::Deny && new.dotfiles == DotfileRule::Allow {
        dropped.push("dotfiles now served".into());
    }
    if old.symlinks != new.symlinks && new.symlinks == SymlinkRule::Follow {
        dropped.push("symlinks now followed anywhere".into());
    }
    dropped
}
