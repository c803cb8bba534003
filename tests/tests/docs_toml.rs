//! Every TOML block in docs/ and the READMEs is loaded by `proxy-acme check`,
//! as a reader would paste it (issue 27: a guide followed literally must
//! work). A block that is part of a file (a resolver table, a certificate)
//! gets the least around it to be a whole file: a resolver for each name it
//! uses, a certificate when it has none. Secret files it names are written
//! to a scratch directory first, with a value of the right form.

use std::path::Path;
use std::process::Command;

use proxy_acme_e2e::{proxy_acme_bin, workspace_root};
use toml::{Table, Value};

/// 30 bytes: base64 with and without padding, standard and URL-safe alike.
const SECRET: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB";
/// An encryption key: 32 bytes, base64 (`head -c 32 /dev/urandom | base64`).
const KEY_32: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";

/// (file, line, block) for every ```toml block of the docs.
fn blocks() -> Vec<(String, usize, String)> {
    let root = workspace_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap_or_else(|e| panic!("docs/: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.push(root.join("README.md"));
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let mut block: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut block {
                None if line.trim_start() == "```toml" => block = Some((i + 2, String::new())),
                Some((start, body)) if line.trim_start() == "```" => {
                    found.push((name.clone(), *start, std::mem::take(body)));
                    block = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    found
}

/// Points every `*_file` setting at a scratch file holding a secret of the
/// right form.
fn scratch_secrets(value: &mut Value, dir: &Path, count: &mut usize) {
    match value {
        Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                match value {
                    Value::String(path) if key.ends_with("_file") && key != "ca_certificate_file" => {
                        *count += 1;
                        let scratch = dir.join(format!("secret-{count}"));
                        let secret = if key == "encryption_key_file" { KEY_32 } else { SECRET };
                        std::fs::write(&scratch, secret).unwrap_or_else(|e| panic!("{e}"));
                        *path = scratch.display().to_string();
                    }
                    other => scratch_secrets(other, dir, count),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scratch_secrets(v, dir, count)),
        _ => {}
    }
}

/// The resolver names the block uses.
fn resolvers_used(table: &Table) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |v: Option<&Value>| {
        if let Some(name) = v.and_then(Value::as_str) {
            names.push(name.to_owned());
        }
        if let Some(list) = v.and_then(Value::as_array) {
            names.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    };
    for cert in table.get("certificates").and_then(Value::as_array).into_iter().flatten() {
        add(cert.get("resolver"));
        add(cert.get("resolvers"));
    }
    for section in ["discover", "on_demand"] {
        add(table.get(section).and_then(|s| s.get("resolver")));
    }
    names
}

/// The block as a whole file.
fn whole(block: &str, dir: &Path) -> Result<String, String> {
    let table: Table = block.parse().map_err(|e| format!("not TOML: {e}"))?;
    let used = resolvers_used(&table);
    let mut value = Value::Table(table);
    scratch_secrets(&mut value, dir, &mut 0);
    let Value::Table(mut table) = value else { unreachable!() };
    let defined: Vec<String> =
        table.get("resolvers").and_then(Value::as_table).map(|t| t.keys().cloned().collect()).unwrap_or_default();
    let resolvers = table.entry("resolvers").or_insert_with(|| Value::Table(Table::new()));
    for name in used {
        if let Some(resolvers) = resolvers.as_table_mut() {
            if !resolvers.contains_key(&name) {
                let mut resolver = Table::new();
                resolver.insert("http_challenge".into(), Value::Table(Table::new()));
                resolvers.insert(name, Value::Table(resolver));
            }
        }
    }
    let has_work = ["certificates", "discover", "on_demand"].iter().any(|k| table.contains_key(*k));
    if !has_work {
        let resolver = defined.first().cloned().unwrap_or_else(|| "le".to_owned());
        if defined.is_empty() {
            let mut le = Table::new();
            le.insert("http_challenge".into(), Value::Table(Table::new()));
            if let Some(resolvers) = table.get_mut("resolvers").and_then(Value::as_table_mut) {
                resolvers.insert("le".into(), Value::Table(le));
            }
        }
        let mut cert = Table::new();
        cert.insert("name".into(), "doc".into());
        cert.insert("domains".into(), Value::Array(vec!["doc.example.com".into()]));
        cert.insert("resolver".into(), resolver.into());
        table.insert("certificates".into(), Value::Array(vec![Value::Table(cert)]));
    }
    toml::to_string(&table).map_err(|e| e.to_string())
}

#[test]
fn every_toml_block_in_the_docs_passes_check() {
    let blocks = blocks();
    assert!(blocks.len() >= 20, "found only {} TOML blocks: did the docs move?", blocks.len());
    let mut failures = Vec::new();
    for (file, line, block) in &blocks {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let text = match whole(block, dir.path()) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("{file}:{line}: {e}"));
                continue;
            }
        };
        let path = dir.path().join("proxy-acme.toml");
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(proxy_acme_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        if !out.status.success() {
            failures.push(format!(
                "{file}:{line}: {}\n--- as checked\n{text}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} blocks fail:\n\n{}", failures.len(), blocks.len(), failures.join("\n\n"));
}
