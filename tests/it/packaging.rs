//! The Debian package as an operator meets it: built by scripts/package-deb.sh, clean under
//! lintian, installed by dpkg into a scratch root (its maintainer scripts run chrootless, as
//! Debian's bootstrap tools run them), its binary checking the configuration it installed, its
//! units verifying, removed and purged; man pages that render without a warning and name every
//! subcommand and configuration key; alert rules that promtool accepts and a dashboard, both
//! naming only metrics that /metrics exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

use crate::support::{binary, have, request_at, run_ok, Server, Tree};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the package from the test binary into `dir`.
fn build_package(dir: &Path) -> PathBuf {
    let out = run_ok(
        Command::new("bash")
            .arg(repo().join("scripts/package-deb.sh"))
            .args(["--out", dir.to_str().unwrap()])
            .env("SENDFILED_BIN", binary()),
        "scripts/package-deb.sh (needs dpkg-dev)",
    );
    PathBuf::from(String::from_utf8(out).unwrap().trim())
}

/// An empty dpkg database and the account files useradd needs, under `root`.
fn scratch_root(root: &Path) {
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "etc",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(root.join("etc/gshadow"), "root:*::\n").unwrap();
}

/// dpkg acting on the scratch root, maintainer scripts run here with DPKG_ROOT set.
fn dpkg(root: &Path, args: &[&str]) -> String {
    let out = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--log=/dev/null",
            ])
            .args(args),
        &format!("dpkg {args:?}"),
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_package_builds_lints_installs_upgrades_and_purges() {
    if !(have("dpkg-shlibdeps", "dpkg-dev") && have("lintian", "lintian")) {
        return;
    }
    let t = Tree::new();
    let deb = build_package(t.dir.path());

    let lint = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.status.success() && !report.lines().any(|l| l.starts_with("E:")),
        "lintian reports errors:\n{report}"
    );

    let listing = String::from_utf8(run_ok(
        Command::new("dpkg-deb").arg("-c").arg(&deb),
        "dpkg-deb -c",
    ))
    .unwrap();
    for path in [
        "./usr/bin/sendfiled",
        "./lib/systemd/system/sendfiled.service",
        "./lib/systemd/system/sendfiled.socket",
        "./etc/sendfiled/sendfiled.toml",
        "./etc/logrotate.d/sendfiled",
        "./usr/share/man/man8/sendfiled.8.gz",
        "./usr/share/man/man8/sendfiled-serve.8.gz",
        "./usr/share/man/man5/sendfiled.toml.5.gz",
        "./usr/share/bash-completion/completions/sendfiled",
        "./usr/share/zsh/vendor-completions/_sendfiled",
        "./usr/share/fish/vendor_completions.d/sendfiled.fish",
        "./usr/share/doc/sendfiled/copyright",
        "./usr/share/doc/sendfiled/docs/operations.md",
        "./usr/share/doc/sendfiled/examples/prometheus/sendfiled.rules.yml",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing from the package:\n{listing}"
        );
    }

    let root = t.dir.path().join("root-fs");
    scratch_root(&root);
    dpkg(&root, &["-i", deb.to_str().unwrap()]);
    assert!(root.join("usr/bin/sendfiled").exists());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("\nsendfiled:"),
        "postinst made no user: {passwd}"
    );
    assert!(root.join("srv/www").is_dir());
    let status = dpkg(&root, &["-s", "sendfiled"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("/etc/sendfiled/sendfiled.toml"),
        "not a conffile: {status}"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/sendfiled.service").exists(),
        "installing into another root enabled the unit on this machine"
    );

    check_installed(&root, t.dir.path());

    // An upgrade (the same package again) keeps a local edit of the configuration.
    let conf = root.join("etc/sendfiled/sendfiled.toml");
    let edited = std::fs::read_to_string(&conf).unwrap() + "# edited by the operator\n";
    std::fs::write(&conf, &edited).unwrap();
    dpkg(&root, &["-i", deb.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);

    dpkg(&root, &["-r", "sendfiled"]);
    assert!(!root.join("usr/bin/sendfiled").exists());
    assert!(conf.exists(), "remove keeps the conffile");
    dpkg(&root, &["-P", "sendfiled"]);
    assert!(!conf.exists(), "purge removes the conffile");
    assert!(
        !root.join("etc/sendfiled").exists(),
        "purge leaves /etc/sendfiled"
    );
}

/// The installed binary checks the installed configuration (its root pointed at a scratch
/// folder: /srv/www is the installed root's), and the installed units verify.
fn check_installed(root: &Path, scratch: &Path) {
    let conf = std::fs::read_to_string(root.join("etc/sendfiled/sendfiled.toml")).unwrap();
    let checked = scratch.join("checked.toml");
    let conf = conf.replace(
        "\"/srv/www\"",
        &format!("\"{}\"", root.join("srv/www").display()),
    );
    let conf = conf
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "off");
    std::fs::write(&checked, conf).unwrap();
    run_ok(
        Command::new(root.join("usr/bin/sendfiled"))
            .args(["check-config", "--config"])
            .arg(&checked),
        "the installed binary's check-config",
    );
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let units = scratch.join("units");
    std::fs::create_dir_all(&units).unwrap();
    for unit in ["sendfiled.service", "sendfiled.socket"] {
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit)).unwrap();
        assert!(
            !text.contains("/usr/local/"),
            "{unit} names /usr/local paths"
        );
        let text = text
            .replace(
                "/usr/bin/sendfiled",
                root.join("usr/bin/sendfiled").to_str().unwrap(),
            )
            .replace(
                "/etc/sendfiled/",
                &format!("{}/", root.join("etc/sendfiled").display()),
            );
        std::fs::write(units.join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("sendfiled.service"))
        .arg(units.join("sendfiled.socket"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        // The units name man:sendfiled(8): the installed page is the one found.
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !report.contains("sendfiled"),
        "the installed units do not verify:\n{report}"
    );
}

/// Every table key `check-config` prints (it prints every key, defaults filled in), as
/// (section, key); the top level is "".
fn config_keys() -> BTreeSet<(String, String)> {
    let t = Tree::new();
    let conf = t.dir.path().join("c.toml");
    std::fs::write(&conf, format!("root = \"{}\"\n", t.root().display())).unwrap();
    let out = run_ok(
        Command::new(binary())
            .args(["check-config", "--config"])
            .arg(&conf),
        "check-config",
    );
    let value: toml::Value = toml::from_str(&String::from_utf8(out).unwrap()).unwrap();
    let mut keys = BTreeSet::new();
    for (name, v) in value.as_table().unwrap() {
        match v {
            toml::Value::Table(section) => {
                for key in section.keys() {
                    keys.insert((name.clone(), key.clone()));
                }
            }
            _ => {
                keys.insert((String::new(), name.clone()));
            }
        }
    }
    keys
}

#[test]
fn man_pages_render_cleanly_and_name_every_subcommand_and_key() {
    if !(have("groff", "groff-base") && have("man", "man-db")) {
        return;
    }
    let t = Tree::new();
    let out = t.dir.path().join("manual");
    run_ok(
        Command::new(binary())
            .args(["generate-manual", "--out"])
            .arg(&out),
        "generate-manual",
    );
    let pages: Vec<PathBuf> = ["man8", "man5"]
        .iter()
        .flat_map(|d| std::fs::read_dir(out.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    for page in &pages {
        let lint = Command::new("groff")
            .args(["-wall", "-man", "-Tutf8", "-z"])
            .arg(page)
            .output()
            .unwrap();
        let warnings = String::from_utf8_lossy(&lint.stderr);
        assert!(
            lint.status.success() && warnings.is_empty(),
            "{}: {warnings}",
            page.display()
        );
        run_ok(
            Command::new("man")
                .arg("-l")
                .arg(page)
                .env("MANPAGER", "cat"),
            "man -l",
        );
    }

    let main_page = std::fs::read_to_string(out.join("man8/sendfiled.8")).unwrap();
    let cmd = sendfiled::cli::Cli::command();
    let subcommands: Vec<&str> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name())
        .collect();
    assert!(subcommands.contains(&"digest"), "{subcommands:?}");
    for name in &subcommands {
        let escaped = format!("sendfiled\\-{}", name.replace('-', "\\-"));
        assert!(
            main_page.contains(&escaped),
            "sendfiled(8) does not name {name}"
        );
        assert!(
            out.join(format!("man8/sendfiled-{name}.8")).exists(),
            "no page for {name}"
        );
    }

    let config_page = std::fs::read_to_string(out.join("man5/sendfiled.toml.5")).unwrap();
    let sections: Vec<(String, &str)> = config_page
        .split("\n.SH ")
        .map(|s| {
            let (title, body) = s.split_once('\n').unwrap_or((s, ""));
            (title.to_lowercase(), body)
        })
        .collect();
    let keys = config_keys();
    assert!(
        keys.contains(&("digests".into(), "etag".into())),
        "{keys:?}"
    );
    for (section, key) in &keys {
        let title = if section.is_empty() {
            "top level".to_string()
        } else {
            format!("[{section}]")
        };
        let body = sections
            .iter()
            .find(|(t, _)| *t == title)
            .map(|(_, b)| *b)
            .unwrap_or_else(|| panic!("sendfiled.toml(5) has no section {title}"));
        let tag = format!(".TP\n\\fB{}\\fR (default: ", key.replace('-', "\\-"));
        assert!(
            body.contains(&tag),
            "sendfiled.toml(5) lacks {key} with its default in {title}"
        );
    }
}

/// The `sendfiled_*` names an alert rule or a dashboard query uses.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("sendfiled_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[test]
fn alert_rules_pass_promtool_and_every_metric_they_and_the_dashboard_name_exists() {
    let rules = repo().join("packaging/prometheus/sendfiled.rules.yml");
    let dashboard = repo().join("packaging/grafana/sendfiled.json");
    if have("promtool", "prometheus") {
        run_ok(
            Command::new("promtool")
                .args(["check", "rules"])
                .arg(&rules),
            "promtool check rules",
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard).unwrap()).unwrap();
    let queries: Vec<String> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");

    let t = Tree::new();
    let s = Server::start(&t.root(), "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let exported = request_at(s.admin_addr(), "GET", "/metrics", &[]).text();
    let families: BTreeSet<String> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let exists = |name: &str| {
        families.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|f| families.contains(f)))
    };
    let named = metric_names(&std::fs::read_to_string(&rules).unwrap())
        .into_iter()
        .chain(queries.iter().flat_map(|q| metric_names(q)));
    for name in named {
        assert!(
            exists(&name),
            "{name} is not exported by /metrics: {families:?}"
        );
    }
}
