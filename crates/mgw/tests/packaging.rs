//! The files under `packaging/` agree with the binary: the configuration the Debian
//! package installs as `/etc/mgw/mgw.toml` is the embedded default, and the systemd unit
//! runs the binary on that file with flags it accepts.

use std::path::PathBuf;
use std::process::Command;

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn mgw(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mgw"))
        .args(args)
        .output()
        .expect("run mgw");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn packaged_config_is_the_embedded_default() {
    let path = repo_file("packaging/mgw.toml");
    let file = std::fs::read_to_string(&path).expect("packaging/mgw.toml");
    let (ok, default, err) = mgw(&["config", "default"]);
    assert!(ok, "mgw config default failed: {err}");
    assert!(
        file == default,
        "packaging/mgw.toml differs from `mgw config default`; refresh it with\n  \
         target/release/mgw config default > packaging/mgw.toml"
    );
    let (ok, out, err) = mgw(&["config", "check", path.to_str().expect("utf-8 path")]);
    assert!(ok, "mgw config check packaging/mgw.toml: {err}");
    assert!(out.trim_end().ends_with(": ok"), "{out}");
}

#[test]
fn unit_runs_the_binary_on_the_packaged_config() {
    let unit = std::fs::read_to_string(repo_file("packaging/mgw.service")).expect("unit");
    let exec: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .collect();
    assert_eq!(exec, ["/usr/bin/mgw run --config /etc/mgw/mgw.toml"]);
    // Every argument the unit passes after the binary name is one `mgw run` accepts.
    let args: Vec<&str> = exec[0].split_whitespace().skip(1).collect();
    let (ok, help, err) = mgw(&[args[0], "--help"]);
    assert!(ok, "{err}");
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag), "`mgw run` has no {flag}");
    }
    // The reload and pre-start checks name the same file and a real subcommand.
    let checks: Vec<&str> = unit
        .lines()
        .filter(|l| l.contains("config check"))
        .collect();
    assert_eq!(
        checks.len(),
        2,
        "ExecStartPre and ExecReload check the file"
    );
    for c in checks {
        assert!(
            c.ends_with("/usr/bin/mgw config check /etc/mgw/mgw.toml"),
            "{c}"
        );
    }
    // The package metadata installs that file from packaging/mgw.toml.
    let cargo = std::fs::read_to_string(repo_file("crates/mgw/Cargo.toml")).expect("Cargo.toml");
    assert!(cargo.contains(r#"["../../packaging/mgw.toml", "etc/mgw/mgw.toml", "644"]"#));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}
