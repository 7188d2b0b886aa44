//! The crate's module graph, read from the source: every `crate::` and `super::` path outside
//! unit tests, in code or in a doc comment (a rustdoc link is a dependency too), is an arrow from
//! the module that writes it to the module it names. A parent module naming its own children (a
//! facade) is not an arrow. The arrows must run one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`zip::stream`) → the source outside `#[cfg(test)]` blocks, plain `//` comments
/// dropped (doc comments kept).
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let rel = rel.to_str().unwrap().replace('/', "::");
            let name = rel.trim_end_matches("::mod").to_string();
            if name == "lib" || name == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: String = code
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    !l.starts_with("//") || l.starts_with("///") || l.starts_with("//!")
                })
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(name, code);
        }
    }
    out
}

/// The longest known module that `path` (`a::b::Item`) starts with.
fn resolve(path: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| known.contains_key(candidate))
}

/// Paths written after `prefix` in `code` (`crate::x::y`, `super::z`).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            let before = code[..*i].chars().next_back();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches(':')
        })
        .collect()
}

/// Every arrow of the graph.
fn arrows(known: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in known {
        let parent = module.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut targets: Vec<String> = paths_after(code, "crate::")
            .into_iter()
            .filter_map(|p| resolve(p, known))
            .collect();
        if let Some(parent) = &parent {
            for p in paths_after(code, "super::") {
                let full = if p.is_empty() {
                    parent.clone()
                } else {
                    format!("{parent}::{p}")
                };
                targets.extend(resolve(&full, known));
            }
        }
        let entry = graph.entry(module.clone()).or_default();
        for t in targets {
            let facade_child = t.starts_with(&format!("{module}::"));
            if t != *module && !facade_child {
                entry.insert(t);
            }
        }
    }
    graph
}

/// A cycle through the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let known = modules();
    assert!(known.len() > 20, "found the sources: {:?}", known.keys());
    let graph = arrows(&known);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}

/// The layer of every module, read from the diagram in docs/architecture.md: a line starting
/// with a number opens a layer, the lines under it continue it; `dir/{mod: what, a, b}` names
/// `dir`, `dir::a` and `dir::b`; parenthesised text is description.
fn documented_layers() -> BTreeMap<String, u32> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    let diagram = doc
        .split("```\n")
        .find(|block| block.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .expect("docs/architecture.md has the layer diagram");
    let mut layers = BTreeMap::new();
    let mut layer = None;
    for line in diagram.lines() {
        let mut text = line.trim();
        if let Some((n, rest)) = text.split_once(' ') {
            if let Ok(n) = n.parse::<u32>() {
                layer = Some(n);
                text = rest;
            }
        }
        let layer = layer.expect("the diagram opens with a layer number");
        for name in diagram_names(text) {
            layers.insert(name, layer);
        }
    }
    layers
}

/// The module names one diagram line gives.
fn diagram_names(line: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut depth = 0;
    for c in line.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let mut names = Vec::new();
    let mut rest = plain.as_str();
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        rest = &rest[start..];
        let word_end = rest
            .find(|c: char| c.is_whitespace() || c == '{')
            .unwrap_or(rest.len());
        let word = rest[..word_end].trim_end_matches('/');
        rest = &rest[word_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}').expect("a closing brace");
            for item in inner[..close].split(',') {
                let item = item.split(':').next().unwrap().trim();
                names.push(if item == "mod" {
                    word.to_string()
                } else {
                    format!("{word}::{item}")
                });
            }
            rest = &inner[close + 1..];
        } else {
            names.push(word.to_string());
        }
    }
    names
}

#[test]
fn every_arrow_points_to_the_same_layer_or_below_as_the_diagram_draws_it() {
    let known = modules();
    let layers = documented_layers();
    let layer_of = |m: &str| {
        layers
            .get(m)
            .copied()
            .or_else(|| layers.get(m.split("::").next().unwrap()).copied())
    };
    let mut problems = Vec::new();
    for m in known.keys() {
        if layer_of(m).is_none() {
            problems.push(format!("{m} is not in the diagram"));
        }
    }
    for (from, targets) in arrows(&known) {
        for to in targets {
            if let (Some(a), Some(b)) = (layer_of(&from), layer_of(&to)) {
                if b > a {
                    problems.push(format!("{from} (layer {a}) uses {to} (layer {b})"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn diagram_lines_name_modules_and_skip_descriptions() {
    assert_eq!(
        diagram_names("io/{mod: SendfileIo, tls, ktls}   body (the body)  fs::path"),
        ["io", "io::tls", "io::ktls", "body", "fs::path"]
    );
}
