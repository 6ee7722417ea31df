//! The tables of features, environment variables and defaults live in one
//! file, `micro/CONFIGURATION.md`, which micro's crate documentation includes
//! and the README repeats. These tests fail when the README's copy drifts from
//! the file, or when the code reads a `MICRO_*` variable the file does not
//! document.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

const BEGIN: &str = "<!-- begin micro/CONFIGURATION.md: edit that file, then copy it here -->\n";
const END: &str = "<!-- end micro/CONFIGURATION.md -->";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("micro lives in the workspace")
        .to_path_buf()
}

fn configuration() -> String {
    fs::read_to_string(workspace().join("micro/CONFIGURATION.md"))
        .expect("micro/CONFIGURATION.md is readable")
}

#[test]
fn readme_repeats_the_configuration_file_exactly() {
    let readme = fs::read_to_string(workspace().join("README.md")).expect("README.md is readable");
    let start = readme.find(BEGIN).expect("README has the begin marker") + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .expect("README has the end marker")
        + start;
    let copy = &readme[start..end];
    if copy != configuration() {
        let line = copy
            .lines()
            .zip(configuration().lines())
            .position(|(a, b)| a != b)
            .map_or("the end".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "README's copy of micro/CONFIGURATION.md differs from the file at {line} \
             (scripts/sync-configuration-docs copies it)"
        );
    }
}

/// Every `"MICRO_..."` string literal in the library crates' sources (not
/// tests, benchmarks or test fixtures, whose variables are not for users).
fn variables_read_by_the_code() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in fs::read_dir(workspace()).expect("workspace is readable") {
        let crate_dir = entry.expect("directory entry").path();
        let name = crate_dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_library = name == "micro" || name.starts_with("micro-");
        if !is_library || name == "micro-test-servers" || name == "micro-bench" {
            continue;
        }
        collect_literals(&crate_dir.join("src"), &mut found);
    }
    found
}

fn collect_literals(dir: &Path, found: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_literals(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("source is readable");
            // Unit tests sit at the end of a file, after `#[cfg(test)]`; their
            // made-up variables are not the code's.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            // Comments and doc examples name made-up variables too.
            let code: String = code
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for piece in code.split("\"MICRO_").skip(1) {
                let tail: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let closes = piece[tail.len()..].starts_with('"');
                // A literal ending in `_` is a prefix the code completes (such
                // as the environment config source's), not a variable.
                if closes && !tail.is_empty() && !tail.ends_with('_') {
                    found.insert(format!("MICRO_{tail}"));
                }
            }
        }
    }
}

#[test]
fn every_variable_the_code_reads_is_documented() {
    let documented = configuration();
    let variables = variables_read_by_the_code();
    assert!(
        variables.len() > 20,
        "found only {} variables: is the source scan broken?",
        variables.len()
    );
    let missing: Vec<&String> = variables
        .iter()
        .filter(|name| !documented.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code but missing from micro/CONFIGURATION.md: {missing:?}"
    );
}
