//! `cargo glci history`, `cargo glci logs` and `cargo glci system df|prune|cache clean|logs`
//! after real runs in a temporary GLCI_HOME (needs the Docker engine and the fixture images).
//! `prune` is narrowed with `--label` to a label nothing carries, so it never touches the
//! Docker objects of other runs on the shared engine; its disk part is this GLCI_HOME's.

use std::path::Path;
use std::process::Stdio;

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const PIPELINE: &str = r#"default:
  image: glci-fixture/busybox:latest
build:
  stage: build
  cache:
    key: system-test
    paths: [kept/]
  script:
    - mkdir -p kept && echo cached > kept/file
    - echo "hello from build"
check:
  stage: test
  script:
    - test "$FAIL" != 1
"#;

fn glci(dir: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    run(
        glci_bin!(),
        dir,
        args,
        &[("GLCI_HOME", home.to_str().unwrap())],
    )
}

/// `du -s -B1 [--apparent-size]`.
fn du(path: &Path, apparent: bool) -> u64 {
    let mut cmd = std::process::Command::new("du");
    cmd.args(["-s", "-B1"]);
    if apparent {
        cmd.arg("--apparent-size");
    }
    let out = cmd.arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn history_logs_df_and_prune_after_real_runs() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let dir = project.path();

    let out = glci(dir, h, &["history"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("no pipeline is kept"),
        "{}",
        stdout(&out)
    );

    let out = glci(dir, h, &["run", "-q"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = glci(dir, h, &["run", "-q", "--var", "FAIL=1"]);
    assert!(!out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // history: newest first, with event, ref, status and duration.
    let out = glci(dir, h, &["history", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["id"], 2);
    assert_eq!(entries[0]["status"], "failed");
    assert_eq!(entries[1]["status"], "success");
    for e in entries {
        assert_eq!(e["source"], "push");
        assert_eq!(e["ref_name"], "main");
        assert_eq!(e["jobs"], 2);
        assert_eq!(e["died"], false);
        let took = e["duration_secs"].as_u64().unwrap();
        assert_eq!(
            e["finished_at"].as_u64().unwrap() - e["started_at"].as_u64().unwrap(),
            took
        );
    }
    let out = glci(dir, h, &["history"]);
    let text = stdout(&out);
    assert!(text.starts_with("   ID  STATUS"), "{text}");
    assert!(text.contains("\n    2  failed    push"), "{text}");

    // logs: the newest run's, or the given one's.
    let out = glci(dir, h, &["logs", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("hello from build"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("pipeline #2"), "{}", stderr(&out));
    let out = glci(dir, h, &["logs", "build", "--pipeline", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("pipeline #1"), "{}", stderr(&out));
    let out = glci(dir, h, &["logs", "deploy"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no kept pipeline of ") && stderr(&out).contains("job `deploy`"),
        "{}",
        stderr(&out)
    );

    // df: GLCI_HOME as du counts it; the cache holds the build's entry.
    let out = glci(dir, h, &["system", "df", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let df: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let disk = &df["disk"];
    let sum = |field: &str| -> u64 {
        [
            "cache",
            "registry",
            "packages",
            "includes",
            "snapshots",
            "pipelines",
            "logs",
            "other",
        ]
        .iter()
        .map(|p| disk[p][field].as_u64().unwrap())
        .sum()
    };
    assert_eq!(sum("allocated"), du(h, false));
    assert_eq!(sum("apparent"), du(h, true));
    assert_eq!(disk["cache"]["files"], 1, "{disk}");
    assert!(disk["logs"]["files"].as_u64().unwrap() >= 4, "{disk}");
    assert!(df["engine"]["images"].is_array(), "{df}");
    let out = glci(dir, h, &["system", "df"]);
    assert!(stdout(&out).contains("\ncache "), "{}", stdout(&out));

    // logs info | clean: the jobs' logs go, the records stay.
    let out = glci(dir, h, &["system", "logs", "info"]);
    assert!(
        stdout(&out).contains("job logs of finished pipelines: 8 file(s)"),
        "{}",
        stdout(&out)
    );
    let out = glci(dir, h, &["system", "logs", "clean"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("removed 8 log file(s)"),
        "{}",
        stdout(&out)
    );
    assert!(!glci(dir, h, &["logs", "build"]).status.success());
    let out = glci(dir, h, &["history", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2);

    // prune: refuses to ask without a terminal; with --force removes the pipelines and
    // keeps the cache.
    let out = std::process::Command::new(glci_bin!())
        .args(["system", "prune"])
        .current_dir(dir)
        .env("GLCI_HOME", h)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --force"), "{}", stderr(&out));
    assert!(h.join("pipelines/1").exists());

    let nothing = format!("--label=io.glci.test-scope=none-{}", std::process::id());
    let out = glci(dir, h, &["system", "prune", "--force", &nothing]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("  pipeline #2 ("), "{text}");
    assert!(text.contains("  pipeline #1 ("), "{text}");
    assert!(text.contains(", 2 pipeline(s),"), "{text}");
    assert!(!h.join("pipelines/1").exists() && !h.join("pipelines/2").exists());
    assert!(h.join("pipelines/last-id").exists());
    assert!(stdout(&glci(dir, h, &["history"])).starts_with("no pipeline is kept"));

    let out = glci(dir, h, &["system", "cache", "clean"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("removed 1 cache entry"),
        "{}",
        stdout(&out)
    );

    // Ids go on after a prune.
    let out = glci(dir, h, &["run", "-q", "build"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = glci(dir, h, &["history", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(entries[0]["id"], 3);
}

#[test]
fn a_running_pipeline_is_kept_by_prune_and_a_killed_one_is_failed_then_pruned() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    const SLEEPER: &str = "sleeper:\n  image: glci-fixture/busybox:latest\n  script:\n    - echo started\n    - sleep 60\n";
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let project = temp_project(None, &[(".gitlab-ci.yml", SLEEPER)]);
    let dir = project.path();
    let mut child = std::process::Command::new(glci_bin!())
        .args(["run", "--jobs", "1"])
        .current_dir(dir)
        .env("GLCI_HOME", h)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut started = false;
    for line in out.lines().map_while(Result::ok) {
        if line.contains("sleeper | started") {
            started = true;
            break;
        }
    }
    assert!(started, "the job never started");

    let nothing = format!("--label=io.glci.test-scope=none-{}", std::process::id());
    let out = glci(dir, h, &["history", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(entries[0]["status"], "running", "{entries}");
    let out = glci(dir, h, &["system", "prune", "--force", &nothing]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("keeps: 1 running pipeline(s)"),
        "{}",
        stdout(&out)
    );
    assert!(h.join("pipelines/1/pipeline.json").exists());

    child.kill().unwrap();
    let _ = child.wait();
    // Its watchdog removes the staging directory; then nothing of it is in use.
    let killed = Instant::now();
    while h.join("pipelines/1/staging").exists() && killed.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = glci(dir, h, &["history", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(entries[0]["status"], "failed", "{entries}");
    assert_eq!(entries[0]["died"], true, "{entries}");
    let out = glci(dir, h, &["history"]);
    assert!(
        stdout(&out).contains("failed (its process died)"),
        "{}",
        stdout(&out)
    );
    let out = glci(dir, h, &["system", "prune", "--force", &nothing]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("  pipeline #1 ("), "{}", stdout(&out));
    assert!(!h.join("pipelines/1").exists());
}
