//! The HTTPS listener as a file for Envoy's file-based LDS, one filter chain
//! per certificate, so a certificate for a new name reaches Envoy without
//! anyone editing the listener: the sidecar renders the operator's template
//! and swaps the file (`..data`, as for file SDS). Envoy adds the new filter
//! chain in place; connections on the other chains are not drained.
//!
//! The template is a LDS resource file in which the lines between
//! `# proxy-acme: per certificate` and `# proxy-acme: end` are repeated for
//! each certificate, with `{{name}}` (the SDS secret name) and
//! `{{server_names}}` (a JSON list of its names) filled in.

use std::path::{Path, PathBuf};

use super::DeployError;

pub const BEGIN: &str = "# proxy-acme: per certificate";
pub const END: &str = "# proxy-acme: end";
const FILE: &str = "listeners.yaml";

/// A template without its two marker lines, or with them out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the listener template needs a `{BEGIN}` line followed by a `{END}` line")]
pub struct TemplateError;

/// Renders `template` for `certificates` (name, names), in the order given.
pub fn render(template: &str, certificates: &[(String, Vec<String>)]) -> Result<String, TemplateError> {
    let lines: Vec<&str> = template.lines().collect();
    let begin = lines.iter().position(|l| l.trim() == BEGIN).ok_or(TemplateError)?;
    let end = lines.iter().skip(begin).position(|l| l.trim() == END).map(|i| begin + i).ok_or(TemplateError)?;
    let block = &lines[begin + 1..end];
    let mut out = String::new();
    for line in &lines[..begin] {
        out.push_str(line);
        out.push('\n');
    }
    for (name, names) in certificates {
        let server_names = serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned());
        for line in block {
            out.push_str(&line.replace("{{name}}", name).replace("{{server_names}}", &server_names));
            out.push('\n');
        }
    }
    for line in &lines[end + 1..] {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Where the listener file goes, and its template.
#[derive(Debug, Clone)]
pub struct ListenerFile {
    dir: PathBuf,
    template: String,
}

impl ListenerFile {
    /// Reads and checks the template.
    pub fn load(dir: &Path, template: &Path) -> Result<Self, DeployError> {
        let text = std::fs::read_to_string(template)
            .map_err(|source| DeployError::Directory { path: template.display().to_string(), source })?;
        render(&text, &[]).map_err(|e| DeployError::Directory {
            path: template.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        Ok(Self { dir: dir.to_owned(), template: text })
    }

    /// The file Envoy's `lds_config.path_config_source.path` names.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Writes the listener for `certificates`; `false` when unchanged.
    pub async fn write(&self, certificates: &[(String, Vec<String>)]) -> Result<bool, DeployError> {
        let contents = render(&self.template, certificates).map_err(|e| DeployError::Directory {
            path: self.dir.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || super::file_sds::write_watched(&dir, FILE, &contents)).await.map_err(
            |e| DeployError::Directory {
                path: self.dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            },
        )?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "resources:\n- name: https\n  filter_chains:\n  # proxy-acme: per certificate\n  - filter_chain_match: { server_names: {{server_names}} }\n    secret: {{name}}\n  # proxy-acme: end\n  tail: true\n";

    #[test]
    fn the_marked_block_is_repeated_per_certificate() {
        let certs = vec![
            ("a.test".to_owned(), vec!["a.test".to_owned(), "www.a.test".to_owned()]),
            ("_.w.test".to_owned(), vec!["*.w.test".to_owned()]),
        ];
        assert_eq!(
            render(TEMPLATE, &certs),
            Ok("resources:\n- name: https\n  filter_chains:\n  - filter_chain_match: { server_names: [\"a.test\",\"www.a.test\"] }\n    secret: a.test\n  - filter_chain_match: { server_names: [\"*.w.test\"] }\n    secret: _.w.test\n  tail: true\n".to_owned())
        );
        assert_eq!(render("no markers\n", &certs), Err(TemplateError));
        assert_eq!(render("# proxy-acme: end\n# proxy-acme: per certificate\n", &certs), Err(TemplateError));
    }

    #[tokio::test]
    async fn writes_behind_a_data_swap_and_skips_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let template = dir.path().join("template.yaml");
        std::fs::write(&template, TEMPLATE).unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("lds");
        let file = ListenerFile::load(&out, &template).unwrap_or_else(|e| panic!("{e}"));
        let one = vec![("a.test".to_owned(), vec!["a.test".to_owned()])];
        assert_eq!(file.write(&one).await.ok(), Some(true));
        assert_eq!(file.write(&one).await.ok(), Some(false));
        let text = std::fs::read_to_string(file.path()).unwrap_or_default();
        assert!(text.contains("secret: a.test"), "{text}");
        assert!(std::fs::read_link(out.join("..data")).is_ok());
    }
}
