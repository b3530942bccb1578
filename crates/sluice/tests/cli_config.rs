//! The config file: its values reach the options, the environment and the command line
//! override them, `--print-config` shows every setting with its source, and bad files are
//! refused with a message naming the problem (exit 2, no panic).

use std::process::{Command, Output};

fn sluice(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args).env_remove("SLUICE_LOOPBACK_ONLY").env_remove("SLUICE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sluice")
}

fn config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path.to_str().expect("utf-8 path").to_owned())
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key}:\n{text}"))
}

const FILE: &str = r#"
[network]
loopback_only = true
encryption = "off"
trackers = ["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"]

[serve]
read_timeout = 30
storage = "ram"

# another command's section: ignored by serve
[download]
out = "/nowhere"
"#;

#[test]
fn file_values_apply_and_the_environment_and_command_line_override_them() {
    let (_dir, path) = config(FILE);
    let out = stdout(&sluice(&["serve", "--config", &path, "--print-config"], &[]));
    assert_eq!(line(&out, "loopback_only"), "loopback_only = true  # file");
    assert_eq!(line(&out, "encryption"), "encryption = \"off\"  # file");
    assert_eq!(
        line(&out, "trackers"),
        "trackers = [\"http://127.0.0.1:6969/announce\", \"udp://127.0.0.1:6969\"]  # file"
    );
    assert_eq!(line(&out, "read_timeout"), "read_timeout = 30  # file");
    assert_eq!(line(&out, "storage"), "storage = \"ram\"  # file");
    assert_eq!(line(&out, "metadata_timeout"), "metadata_timeout = 30  # default");
    assert!(out.contains("[network]") && out.contains("[serve]"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("out ")), "{out}");

    // The environment beats the file, the command line beats both.
    let env = [("SLUICE_LOOPBACK_ONLY", "0")];
    let out = stdout(&sluice(&["--config", &path, "serve", "--print-config", "--encryption", "require"], &env));
    assert_eq!(line(&out, "loopback_only"), "loopback_only = false  # environment");
    assert_eq!(line(&out, "encryption"), "encryption = \"require\"  # command line");

    // The file can come from the environment too.
    let out = stdout(&sluice(&["serve", "--print-config"], &[("SLUICE_CONFIG", &path)]));
    assert_eq!(line(&out, "read_timeout"), "read_timeout = 30  # file");
}

#[test]
fn loopback_only_in_the_file_confines_the_server() {
    // The switch from the file has the flag's effect: a non-loopback HTTP address is refused.
    let (_dir, path) = config("[network]\nloopback_only = true\n[serve]\nlisten = \"0.0.0.0:0\"\n");
    let o = sluice(&["serve", "--config", &path], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

#[test]
fn bad_files_are_refused_with_a_clear_message() {
    let cases = [
        ("[network]\nloopback_onyl = true\n", "unknown key `loopback_onyl` in [network]"),
        ("[bogus]\nx = 1\n", "unknown section [bogus]"),
        ("[serve]\nread_timeout = \"soon\"\n", "invalid value 'soon' for '--read-timeout"),
        ("[serve\n", "is not valid TOML"),
        ("[serve]\nstorage = \"tape\"\n", "invalid value 'tape' for '--storage"),
        ("[network]\nno_dht = 3\n", "expected true or false"),
        ("network = 1\n", "must be a [section]"),
    ];
    for (text, want) in cases {
        let (_dir, path) = config(text);
        let o = sluice(&["serve", "--config", &path, "--print-config"], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{text:?}: {err}");
        assert!(err.contains(want), "{text:?}: wanted {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = sluice(&["serve", "--config", "/nonexistent/sluice.toml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reading config /nonexistent/sluice.toml"));
}
