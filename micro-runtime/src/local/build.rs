//! Fetching a service's source (git clone) and building it (cargo).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use super::{LocalConfig, logs::LogBuffer};
use crate::{Error, LogSource, Result, ServiceSpec, Source, Target};

/// Clones `url` at `reference` into `into`, replacing whatever is there.
pub(crate) async fn clone(
    config: &LocalConfig,
    url: &str,
    reference: Option<&str>,
    into: &Path,
    logs: &LogBuffer,
) -> Result<()> {
    if tokio::fs::try_exists(into).await? {
        tokio::fs::remove_dir_all(into).await?;
    }
    if let Some(parent) = into.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut git = Command::new(&config.git);
    git.args(["clone", "--quiet", "--depth", "1"]);
    if let Some(reference) = reference {
        git.args(["--branch", reference]);
    }
    git.arg("--").arg(url).arg(into);
    logs.note(format!("fetching {url}"));
    run_logged(git, logs, "git clone").await
}

/// Where the source of `spec` is, checking that it is a cargo project.
pub(crate) async fn check_source(dir: &Path) -> Result<()> {
    if !tokio::fs::try_exists(dir.join("Cargo.toml")).await? {
        return Err(Error::invalid_argument(format!(
            "{} holds no Cargo.toml",
            dir.display()
        )));
    }
    Ok(())
}

/// The cargo messages this module reads (`--message-format=json`).
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    target: Option<MessageTarget>,
    #[serde(default)]
    executable: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct MessageTarget {
    name: String,
    kind: Vec<String>,
}

/// Builds `spec` in `dir`; the executable to run. Diagnostics go to `logs`.
pub(crate) async fn cargo_build(
    config: &LocalConfig,
    spec: &ServiceSpec,
    dir: &Path,
    logs: &LogBuffer,
) -> Result<PathBuf> {
    let mut cargo = Command::new(&config.cargo);
    cargo
        .arg("build")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .current_dir(dir);
    if config.release {
        cargo.arg("--release");
    }
    if let Some(package) = &spec.package {
        cargo.args(["--package", package]);
    }
    match &spec.target {
        Target::Default => {}
        Target::Bin(name) => {
            cargo.args(["--bin", name]);
        }
        Target::Example(name) => {
            cargo.args(["--example", name]);
        }
    }
    if let Some(target_dir) = &config.target_dir {
        cargo.env("CARGO_TARGET_DIR", target_dir);
    }
    cargo
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    logs.note(format!("building {}", spec.name));
    let mut child = cargo
        .spawn()
        .map_err(|err| Error::from(err).context(format!("running {}", config.cargo)))?;
    let stderr = child.stderr.take();
    let diagnostics = async {
        if let Some(stderr) = stderr {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                logs.push(LogSource::Runtime, format!("cargo: {line}"));
            }
        }
    };
    let stdout = child.stdout.take();
    let artifacts = async {
        let mut executables = Vec::new();
        if let Some(stdout) = stdout {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(executable) = executable_of(&line, &spec.target) {
                    executables.push(executable);
                }
            }
        }
        executables
    };
    let ((), mut executables, status) = tokio::join!(diagnostics, artifacts, child.wait());
    let status = status?;
    if !status.success() {
        return Err(Error::failed_precondition(format!(
            "building {} failed ({status}); see its log",
            spec.name
        )));
    }
    executables.dedup();
    match executables.as_slice() {
        [executable] => Ok(executable.clone()),
        [] => Err(Error::invalid_argument(format!(
            "building {} produced no executable for {:?}",
            spec.name, spec.target
        ))),
        several => Err(Error::invalid_argument(format!(
            "building {} produced several executables ({several:?}); name one with Target::Bin",
            spec.name
        ))),
    }
}

fn executable_of(line: &str, wanted: &Target) -> Option<PathBuf> {
    let message: Message = serde_json::from_str(line).ok()?;
    if message.reason != "compiler-artifact" {
        return None;
    }
    let target = message.target?;
    let is = |kind: &str| target.kind.iter().any(|k| k == kind);
    let matches = match wanted {
        Target::Default => is("bin"),
        Target::Bin(name) => is("bin") && &target.name == name,
        Target::Example(name) => is("example") && &target.name == name,
    };
    if matches { message.executable } else { None }
}

/// Runs a short command, its output into `logs`; an error if it fails.
async fn run_logged(mut command: Command, logs: &LogBuffer, what: &str) -> Result<()> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .map_err(|err| Error::from(err).context(format!("running {what}")))?;
    for line in String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
    {
        logs.push(LogSource::Runtime, format!("{what}: {line}"));
    }
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::unavailable(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The directory the source of `spec` is (or will be) in.
pub(crate) fn source_dir(config: &LocalConfig, spec: &ServiceSpec) -> PathBuf {
    match &spec.source {
        Source::Path(path) => path.clone(),
        Source::Git { .. } => config.workdir.join(&spec.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_wanted_executable_from_cargo_messages() {
        let example = r#"{"reason":"compiler-artifact","target":{"name":"greeter_server","kind":["example"]},"executable":"/t/debug/examples/greeter_server"}"#;
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"micro","kind":["lib"]},"executable":null}"#;
        let wanted = Target::Example("greeter_server".into());
        assert_eq!(
            executable_of(example, &wanted),
            Some(PathBuf::from("/t/debug/examples/greeter_server"))
        );
        assert_eq!(executable_of(lib, &wanted), None);
        assert_eq!(
            executable_of(example, &Target::Bin("greeter_server".into())),
            None
        );
        assert_eq!(executable_of("not json", &wanted), None);
    }
}
