//! Running the operator's programs (nginx checks and reloads, hooks): argv
//! only, never a shell, with a time limit and the output kept for errors.

use std::time::Duration;

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` could not start: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{program}` did not finish within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    #[error("`{program}` failed ({status}): {output}")]
    Failed { program: String, status: String, output: String },
}

/// Runs `argv` with `env` added; `Ok` with its combined output when it
/// exits 0. The child is killed if the time runs out.
pub async fn run(argv: &[String], env: &[(&str, String)], timeout: Duration) -> Result<String, CommandError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CommandError::Spawn {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        });
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env.iter().map(|(k, v)| (k, v))).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => return Err(CommandError::Timeout { program: program.clone(), timeout }),
        Ok(Err(source)) => return Err(CommandError::Spawn { program: program.clone(), source }),
        Ok(Ok(output)) => output,
    };
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    if output.status.success() {
        Ok(text)
    } else {
        Err(CommandError::Failed { program: program.clone(), status: output.status.to_string(), output: text })
    }
}
