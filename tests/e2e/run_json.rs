//! `cargo glci run --json`: one JSON object per line on stdout, human output on stderr
//! (needs the Docker engine and the fixture images).

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};
use serde_json::Value;

const PIPELINE: &str = "default:\n  image: glci-fixture/busybox:latest\nok:\n  script: [echo hello-json]\nbad:\n  script: [exit 3]\n";

#[test]
fn run_json_prints_one_event_per_line_and_the_human_view_on_stderr() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "--json", "--json-logs"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"pipeline_created"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"pipeline_finished"), "{kinds:?}");
    let created = &events[0];
    assert_eq!(created["pipeline_id"], 1);
    assert_eq!(created["jobs"][0]["name"], "ok");
    assert_eq!(created["jobs"][0]["when"], "on_success");

    let of = |kind: &str, job: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["event"] == kind && e["job"] == job)
            .collect()
    };
    for job in ["ok", "bad"] {
        assert_eq!(of("job_started", job).len(), 1, "{kinds:?}");
        let started = kinds
            .iter()
            .zip(&events)
            .position(|(k, e)| *k == "job_started" && e["job"] == job);
        let finished = kinds
            .iter()
            .zip(&events)
            .position(|(k, e)| *k == "job_finished" && e["job"] == job);
        assert!(started < finished, "{kinds:?}");
    }
    let log: String = of("log", "ok")
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(log.contains("hello-json"), "{log}");
    let ok = of("job_finished", "ok")[0];
    assert_eq!(ok["status"], "success");
    assert!(ok["duration_secs"].as_f64().unwrap() > 0.0, "{ok}");
    assert_eq!(ok["failure_reason"], Value::Null);
    let bad = of("job_finished", "bad")[0];
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["failure_reason"], "script_failure");
    assert_eq!(bad["exit_code"], 3);
    let finished = events.last().unwrap();
    assert_eq!(finished["status"], "failed");
    assert_eq!(finished["passed"], false);

    // The human view is all on stderr: log lines and the summary.
    let err = stderr(&out);
    assert!(err.contains("ok | hello-json"), "{err}");
    assert!(err.contains("pipeline #1 failed"), "{err}");
}

#[test]
fn run_json_reports_an_unknown_job_as_an_error_event() {
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let out = run(glci_bin!(), project.path(), &["run", "--json", "nope"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let event: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(event["event"], "error");
    assert_eq!(
        event["message"],
        "no job `nope` in this pipeline (jobs: ok, bad)"
    );
}
