use std::io::Write;
use std::process::Command;

use crate::support::{binary, read_response, Spawned, Tree};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(t: &Tree, text: &str) -> String {
    let p = t.dir.path().join("sendfiled.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn check_config_prints_the_effective_config() {
    let t = Tree::new();
    let c = config(
        &t,
        "root = \"root\"\nmax_ranges = 4\n[limits]\nheader_timeout = \"5s\"\n",
    );
    let (code, out, err) = run(&["check-config", "--config", &c]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max_ranges = 4"), "{out}");
    assert!(out.contains("header_timeout = \"5s\""), "{out}");
    assert!(
        out.contains("keepalive_timeout = \"60s\""),
        "defaults are printed: {out}"
    );
    assert!(
        out.contains(&format!(
            "root = \"{}\"",
            t.root().canonicalize().unwrap().display()
        )),
        "{out}"
    );
}

/// `enabled = true` with an empty order serves no variant: it is off, and prints back so.
#[test]
fn an_empty_precompressed_order_is_off() {
    let t = Tree::new();
    let c = config(&t, "[precompressed]\nenabled = true\norder = []\n");
    let (code, out, err) = run(&["check-config", "--config", &c]);
    assert_eq!(code, 0, "{err}");
    let section = out.split("[precompressed]").nth(1).unwrap_or("");
    assert!(section.trim_start().starts_with("enabled = false"), "{out}");
}

/// Each bad config stops start-up with exit 2 and one line naming the file and the cause.
#[test]
fn bad_configs_are_one_clear_line() {
    let t = Tree::new();
    let cases: &[(&str, &str)] = &[
        ("rooot = \"/srv\"\n", "unknown field `rooot`"),
        ("[limits]\nheader_byts = 1\n", "unknown field `header_byts`"),
        (
            "root = \"/does/not/exist\"\n",
            "key `root`: /does/not/exist cannot be used",
        ),
        (
            "[limits]\nheader_timeout = \"soon\"\n",
            "key `limits.header_timeout`",
        ),
        ("symlinks = \"sometimes\"\n", "unknown variant `sometimes`"),
        ("listen = [\"not an address\"]\n", "key `listen`"),
        ("max_ranges = 0\n", "key `max_ranges`"),
        (
            "[[cache_control]]\npath = \"/a/[\"\nvalue = \"x\"\n",
            "key `cache_control[0].path`",
        ),
        (
            "[[bandwidth]]\nprefix = \"dl/\"\nrate = \"1MiB\"\n",
            "key `bandwidth[0].prefix`: \"dl/\" must start with /",
        ),
        ("this is not toml", "line 1"),
    ];
    for (text, want) in cases {
        let c = config(&t, text);
        for cmd in [
            vec!["check-config", "--config", &c],
            vec!["serve", "--config", &c],
        ] {
            let (code, _, err) = run(&cmd);
            assert_eq!(code, 2, "{text}: {err}");
            let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
            assert_eq!(lines.len(), 1, "{text}: {err}");
            assert!(lines[0].contains(&c), "names the file: {}", lines[0]);
            assert!(lines[0].contains(want), "{text}: {}", lines[0]);
        }
    }
    let (code, _, err) = run(&["check-config", "--config", "/no/such/file.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/no/such/file.toml: cannot read config file"),
        "{err}"
    );
}

#[test]
fn unusable_root_or_listen_address_stops_start_up() {
    let t = Tree::new();
    let (code, _, err) = run(&["serve", "--root", "/no/such/dir", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("root") && err.contains("/no/such/dir"),
        "{err}"
    );
    let file = t.file("f.txt", b"x");
    let (code, _, err) = run(&[
        "serve",
        "--root",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a directory"), "{err}");
    // An address somebody else listens on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&[
        "serve",
        "--root",
        t.root().to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "cannot listen on {addr}: the address is already in use"
        )),
        "{err}"
    );
    // Two sendfileds cannot share a port by accident either (SO_REUSEPORT).
    let first = Spawned::serve(&["--root", t.root().to_str().unwrap()]);
    let (code, _, err) = run(&[
        "serve",
        "--root",
        t.root().to_str().unwrap(),
        "--listen",
        &first.addr.to_string(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn serves_and_stops_cleanly_on_sigterm() {
    let t = Tree::new();
    t.file("hello.txt", b"hello\n");
    let c = config(&t, "root = \"root\"\nworkers = 2\n");
    let s = Spawned::serve(&["--config", &c]);
    let mut conn = s.connect();
    conn.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut conn, false).unwrap().body, b"hello\n");
    drop(conn);
    let status = s.terminate(10);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn cli_flags_override_the_file() {
    let t = Tree::new();
    t.file("from-cli.txt", b"cli");
    let elsewhere = t.dir.path().join("other");
    std::fs::create_dir(&elsewhere).unwrap();
    let c = config(&t, &format!("root = \"{}\"\n", elsewhere.display()));
    let s = Spawned::serve(&["--config", &c, "--root", t.root().to_str().unwrap()]);
    let mut conn = s.connect();
    conn.write_all(b"GET /from-cli.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut conn, false).unwrap().body, b"cli");
}

/// The README's first command (its listen address swapped for a free port) shows something
/// that works at `/`: a listing of the folder it serves, and the start-up line names the URL.
#[test]
fn the_readmes_first_command_serves_a_listing_at_the_root() {
    let readme = include_str!("../../README.md");
    let command = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- serve "))
        .expect("README has the serve command");
    let words: Vec<&str> = command.split_whitespace().skip(5).collect();
    let mut args = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "--listen" {
            i += 2; // the harness listens on a free port instead
            continue;
        }
        args.push(words[i]);
        i += 1;
    }
    let s = crate::support::Spawned::serve(&args);
    let r = crate::support::request_at(s.addr, "GET", "/", &[]);
    assert_eq!(r.status, 200, "`/` after the README's command");
    assert!(r.text().contains("architecture.md"), "{}", r.text());
    // The start-up line may come a moment after the listener answers (its thread is not the
    // worker's), so wait for it rather than read the log once.
    crate::support::wait_for_log(&s, "/docs at http://", 1);
    crate::support::wait_for_log(&s, "directory listings on", 1);
}
