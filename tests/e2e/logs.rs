//! Job logs through the real binary and engine (issue 14): a fast log arrives whole, a
//! secret cut at any boundary stays masked everywhere, binary output is kept byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const SECRET: &str = "Sup3rS3cretValue42";

/// The one pipeline directory under `home`.
fn pipeline_dir(home: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(home.join("pipelines"))
        .expect("pipelines dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

/// The stand-in's copy of the job's log: `traces/<id>.log` in the pipeline's directory.
fn server_trace(pipeline: &Path) -> Vec<u8> {
    let traces: Vec<PathBuf> = std::fs::read_dir(pipeline.join("traces"))
        .expect("traces dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(traces.len(), 1, "{traces:?}");
    std::fs::read(&traces[0]).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_end_of_a_fast_60_mb_log_is_never_lost() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(
        None,
        &[(
            ".gitlab-ci.yml",
            "j:\n  image: glci-fixture/debian:bookworm\n  script:\n    - head -c 45000000 /dev/urandom | base64 -w 0 | fold -w 1000\n    - echo\n    - echo END-MARKER\n",
        )],
    );
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "-q"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("passed"), "{}", stdout(&out));
    let pipeline = pipeline_dir(home.path());
    let log = std::fs::read(pipeline.join("jobs/j/job.log")).unwrap();
    // 60,000,000 bytes of base64 in 60,000 lines, and the runner's lines around them.
    assert!(log.len() > 60_060_000, "only {} bytes arrived", log.len());
    let tail = String::from_utf8_lossy(&log[log.len() - 400..]).into_owned();
    assert!(tail.contains("\nEND-MARKER\n"), "{tail:?}");
    assert!(tail.contains("Job succeeded"), "{tail:?}");
    assert_eq!(server_trace(&pipeline), log);
}

#[test]
fn a_secret_cut_at_the_64_kib_line_cut_stays_masked_everywhere() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(
        None,
        &[(
            ".gitlab-ci.yml",
            "j:\n  image: glci-fixture/debian:bookworm\n  script:\n    - \"head -c 65535 /dev/zero | tr '\\\\0' x; printf Sup3r; sleep 1; printf 'S3cretValue42\\\\n'\"\n    - printf 'end of output Sup3rS3cr'; sleep 1; printf 'etValue42'\n",
        )],
    );
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "--masked-var", &format!("SECRET={SECRET}")],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pipeline = pipeline_dir(home.path());
    let log = std::fs::read(pipeline.join("jobs/j/job.log")).unwrap();
    let trace = server_trace(&pipeline);
    for (what, bytes) in [
        ("stdout", out.stdout.as_slice()),
        ("stderr", out.stderr.as_slice()),
        ("job.log", &log),
        ("the stand-in's trace", &trace),
    ] {
        assert!(
            !contains(bytes, SECRET.as_bytes()),
            "{what} shows the secret"
        );
    }
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains(&format!("{}[MASKED]\n", "x".repeat(100))),
        "{text:.300}"
    );
    assert!(text.contains("end of output [MASKED]"), "{text:.300}");
}

/// Deterministic noise: every byte value, most of it invalid UTF-8.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn binary_output_is_stored_byte_for_byte() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(
        None,
        &[(
            ".gitlab-ci.yml",
            "j:\n  image: glci-fixture/debian:bookworm\n  script:\n    - cat blob.bin\n",
        )],
    );
    let blob = noise(1_000_000);
    std::fs::write(project.path().join("blob.bin"), &blob).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .arg("-C")
            .arg(project.path())
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["add", "blob.bin"]);
    git(&["commit", "-q", "-m", "blob"]);
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "-q"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pipeline = pipeline_dir(home.path());
    let log = std::fs::read(pipeline.join("jobs/j/job.log")).unwrap();
    // The blob plus a few hundred bytes of runner lines: not 1.8 MB of U+FFFD.
    assert!(log.len() < blob.len() + 8192, "{} bytes stored", log.len());
    let start = log
        .windows(64)
        .position(|w| w == &blob[..64])
        .expect("the blob's first bytes are in job.log");
    assert!(
        log[start..].starts_with(&blob),
        "job.log differs from the bytes written"
    );
    assert_eq!(server_trace(&pipeline), log);
}
