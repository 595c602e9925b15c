//! `cargo glci run`'s progress on stderr when it is no terminal: plain lines (a service that
//! takes seconds to answer: one line when the wait passes a second, one when it ends), never
//! in the job log, not among `--json`'s events, and none with `--quiet` (needs the Docker
//! engine and the fixture images).

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

/// The service starts listening only after 3 s, so the job waits for it.
const PIPELINE: &str = r#"
slow-service:
  image: glci-fixture/busybox:latest
  variables:
    GIT_STRATEGY: none
  services:
    - name: glci-fixture/tcp-service:latest
      alias: greeter
      entrypoint: ["sh", "-c", "sleep 3; exec /serve"]
  script:
    - nc greeter 7777 </dev/null
"#;

#[test]
fn a_slow_service_is_shown_as_plain_lines_and_quiet_shows_none() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let env = [("GLCI_HOME", home.path().to_str().unwrap())];

    let out = run(glci_bin!(), project.path(), &["run"], &env);
    let (err, log) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(0), "{err}\n{log}");
    assert!(log.contains("hello from tcp-service"), "{log}");
    let progress: Vec<&str> = err.lines().filter(|l| l.contains("for service")).collect();
    let service = "glci-fixture/tcp-service:latest";
    assert!(
        progress.first().is_some_and(
            |l| l.starts_with(&format!("slow-service | waiting for service {service} ("))
        ),
        "{err}"
    );
    assert!(
        progress.last().is_some_and(
            |l| l.starts_with(&format!("slow-service | waited for service {service} ("))
        ),
        "{err}"
    );
    // Throttled: a 3 s wait is its first line and its last, perhaps one between.
    assert!(progress.len() <= 3, "{err}");
    // Progress is not the job's log.
    assert!(!log.contains("for service glci"), "{log}");

    // --json: the events on stdout stay the run's (no progress among them), the lines go to
    // stderr with the rest of the human view.
    let out = run(glci_bin!(), project.path(), &["run", "--json"], &env);
    let (err, events) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("| waited for service"), "{err}");
    for line in events.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = event["event"].as_str().unwrap();
        assert!(!kind.contains("progress"), "{line}");
    }
    assert!(!events.contains("for service"), "{events}");

    let out = run(glci_bin!(), project.path(), &["run", "--quiet"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("for service"), "{err}");
}
