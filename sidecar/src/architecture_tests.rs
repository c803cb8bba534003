//! The module graph has no cycle: data flows one way (docs/architecture.md).
//! Reads the crate's own sources; a `crate::<module>` path outside comments
//! and test code is an edge from the file's top-level module to `<module>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn is_test_file(name: &str) -> bool {
    name.ends_with("_tests.rs") || name == "tests.rs"
}

/// The code of a file without comments and without its trailing
/// `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules named after `crate::` in `code`, braces included
/// (`use crate::{a, b::c}`).
fn targets(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first name of each part at depth 0: `a` and `b` of `{a::{x, y}, b}`.
            let (mut depth, mut start) = (0, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        out.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn walk(dir: &Path, root: &Path, graph: &mut Graph) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, root, graph);
            continue;
        }
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !rel.ends_with(".rs") || is_test_file(&file) || rel == "lib.rs" || rel == "main.rs" {
            continue;
        }
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for target in targets(&code(&text)) {
            if target != module {
                graph.entry(module.clone()).or_default().entry(target).or_default().insert(rel.clone());
            }
        }
    }
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn visit(graph: &Graph, node: &str, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in graph.get(node).map(|m| m.keys()).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    visit(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    walk(&root, &root, &mut graph);
    assert!(graph.contains_key("daemon") && graph.contains_key("config"), "the walk found no modules: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    format!(
                        "{} -> {} ({})",
                        w[0],
                        w[1],
                        graph[&w[0]][&w[1]].iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect();
            panic!("import cycle {}:\n  {}", cycle.join(" -> "), edges.join("\n  "));
        }
    }
}

#[test]
fn the_checker_sees_grouped_and_inline_paths_and_skips_comments_and_tests() {
    let text = "use crate::{cert::{self, Bundle}, store};\n// crate::daemon\nlet x = crate::acme::f();\n#[cfg(test)]\nmod tests {\n use crate::serve;\n}\n";
    let found: Vec<String> = targets(&code(text)).into_iter().collect();
    assert_eq!(found, ["acme", "cert", "store"]);
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().entry("b".into()).or_default().insert("a.rs".into());
    assert!(cycle_from(&graph, "a").is_none());
    graph.entry("b".into()).or_default().entry("a".into()).or_default().insert("b/x.rs".into());
    assert_eq!(cycle_from(&graph, "a").unwrap(), ["a", "b", "a"]);
}
