//! The manual pages and shell completions, generated for packages rather than written by hand:
//! sendfiled(8) and one page per subcommand from the clap definitions, sendfiled.toml(5) from
//! the "Keys" part of docs/configuration.md (built into the binary), and completions for bash,
//! zsh and fish. `sendfiled generate-manual --out DIR` writes them.

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// docs/configuration.md, the source of sendfiled.toml(5).
const CONFIGURATION: &str = include_str!("../docs/configuration.md");

/// Writes `man8/`, `man5/` and `completions/` under `out`.
pub fn write_all(out: &Path) -> io::Result<()> {
    let man8 = out.join("man8");
    let man5 = out.join("man5");
    let completions = out.join("completions");
    for dir in [&man8, &man5, &completions] {
        std::fs::create_dir_all(dir)?;
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    command_pages(&cmd, &man8)?;
    let mut page = std::fs::File::create(man5.join("sendfiled.toml.5"))?;
    page.write_all(configuration_page(CONFIGURATION, env!("CARGO_PKG_VERSION")).as_bytes())?;
    for (shell, name) in [
        (Shell::Bash, "sendfiled"),
        (Shell::Zsh, "_sendfiled"),
        (Shell::Fish, "sendfiled.fish"),
    ] {
        let mut file = std::fs::File::create(completions.join(name))?;
        clap_complete::generate(shell, &mut Cli::command(), "sendfiled", &mut file);
    }
    Ok(())
}

/// sendfiled.8, then sendfiled-SUB.8 for each visible subcommand.
fn command_pages(cmd: &clap::Command, dir: &Path) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("sendfiled {}", env!("CARGO_PKG_VERSION")));
    man.generate_to(dir).map(drop)
}

/// sendfiled.toml(5) in man(7) macros: the sections and key tables of `markdown`'s "## Keys"
/// part, each key with its default, and the prose between them.
pub fn configuration_page(markdown: &str, version: &str) -> String {
    let mut out = format!(
        ".TH SENDFILED.TOML 5 \"\" \"sendfiled {version}\" \"File Formats\"\n\
         .SH NAME\nsendfiled.toml \\- configuration file of sendfiled(8)\n\
         .SH DESCRIPTION\nsendfiled reads an optional TOML file named with \\fB\\-\\-config\\fR. \
         Durations are written \"500ms\", \"10s\", \"2m\", \"1h\" or as seconds; sizes \"16KiB\", \
         \"2MiB\", \"1GiB\" or as bytes. \\fBsendfiled check\\-config \\-\\-config FILE\\fR \
         validates a file and prints every key with its effective value.\n"
    );
    let keys = markdown.split("\n## Keys\n").nth(1).unwrap_or("");
    let keys = keys.split("\n## ").next().unwrap_or("");
    let mut in_code = false;
    for line in keys.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            out.push_str(if in_code { ".PP\n.nf\n" } else { ".fi\n" });
            continue;
        }
        if in_code {
            out.push_str(&escape(line));
            out.push('\n');
        } else if let Some(title) = line.strip_prefix("### ") {
            out.push_str(&format!(".SH {}\n", inline(title).to_uppercase()));
        } else if let Some(row) = line.strip_prefix("| `") {
            key_row(row, &mut out);
        } else if line.starts_with('|') {
            // The table's head and rule.
        } else if line.trim().is_empty() {
            out.push_str(".PP\n");
        } else {
            out.push_str(&inline(line));
            out.push('\n');
        }
    }
    out.push_str(".SH SEE ALSO\nsendfiled(8), /usr/share/doc/sendfiled/docs/configuration.md\n");
    out
}

/// One `| `key` | default | meaning |` row as a tagged paragraph.
fn key_row(row: &str, out: &mut String) {
    let cells: Vec<&str> = row.trim_end_matches('|').split(" | ").collect();
    let key = cells[0].trim_end_matches('`');
    let default = cells.get(1).map_or("", |c| c.trim());
    let meaning = cells
        .get(2..)
        .map_or(String::new(), |c| c.join(" | ").trim().to_string());
    out.push_str(&format!(".TP\n\\fB{}\\fR", escape(key)));
    if !default.is_empty() {
        out.push_str(&format!(" (default: {})", inline(default)));
    }
    out.push('\n');
    out.push_str(&inline(&meaning));
    out.push('\n');
}

/// Markdown inline text as roff: links keep their text, code and emphasis marks go, and the
/// characters roff would read are escaped.
fn inline(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find("](").map(|c| open + c);
        let end = close.and_then(|c| rest[c..].find(')').map(|e| c + e));
        match (close, end) {
            (Some(c), Some(e)) => {
                plain.push_str(&rest[..open]);
                plain.push_str(&rest[open + 1..c]);
                rest = &rest[e + 1..];
            }
            _ => break,
        }
    }
    plain.push_str(rest);
    let plain = plain.replace("**", "").replace('`', "").replace("\\|", "|");
    escape(&plain)
}

/// Escapes backslashes, hyphens, a leading `.` or `'` (which roff would take for requests), and
/// every non-ASCII character (as `\[uXXXX]`, which troff reads without preconv).
fn escape(text: &str) -> String {
    let mut text = text.replace('\\', "\\e").replace('-', "\\-");
    if !text.is_ascii() {
        text = text
            .chars()
            .map(|c| match c {
                c if c.is_ascii() => c.to_string(),
                c => format!("\\[u{:04X}]", u32::from(c)),
            })
            .collect();
    }
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tables_become_tagged_paragraphs_with_their_defaults() {
        let md = "# C\n\n## Keys\n\n### `[limits]`\n\nSome *text* with [a link](x.md).\n\n\
                  | key | default | meaning |\n|---|---|---|\n\
                  | `max_ranges` | `16` | parts \\| at most |\n\n## Other\n\n| `hidden` | 1 | no |\n";
        let page = configuration_page(md, "9.9");
        assert!(page.contains(".SH [LIMITS]\n"), "{page}");
        assert!(
            page.contains(".TP\n\\fBmax_ranges\\fR (default: 16)\nparts | at most\n"),
            "{page}"
        );
        assert!(page.contains("Some *text* with a link.\n"), "{page}");
        assert!(!page.contains("hidden"), "only the Keys part: {page}");
    }
}
