//! `cargo glci run --runner-config` and `--docker-socket` through the real binary: a broken
//! configuration is one error naming file and line before anything runs; `--docker-socket`
//! gives the job the engine and says what that means, once.

use glci_e2e::{docker_engine_id, glci_bin, run, stderr, stdout, temp_project};

#[test]
fn a_broken_runner_configuration_is_one_error_naming_file_and_line() {
    let project = temp_project(
        None,
        &[
            (".gitlab-ci.yml", "job:\n  script: [echo hi]\n"),
            (
                "ci/runner.toml",
                "[[runners]]\n  tags = [\"a\",\n  name = 3\n",
            ),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "--runner-config", "ci/runner.toml"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ci/runner.toml:3:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn docker_socket_gives_the_job_the_engine_and_warns_once() {
    let project = temp_project(
        None,
        &[(
            ".gitlab-ci.yml",
            "job:\n  image:\n    name: glci-fixture/docker:dind\n    entrypoint: [\"\"]\n  script:\n    - docker info --format 'engine-id {{.ID}}'\n    - echo shared-file > shared.txt\n    - docker run --rm -v \"$CI_PROJECT_DIR:/src\" glci-fixture/busybox:latest cat /src/shared.txt\n    - echo \"dir $CI_PROJECT_DIR\"\n",
        )],
    );
    let home = tempfile::tempdir().unwrap();
    let out = run(
        glci_bin!(),
        project.path(),
        &["run", "--docker-socket"],
        &[("GLCI_HOME", home.path().to_str().unwrap())],
    );
    let (out_text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{out_text}\n{err}");
    let engine_id = docker_engine_id();
    assert!(
        out_text.contains(&format!("engine-id {engine_id}")),
        "{out_text}"
    );
    // The project directory is at the same path on the host: a container the job starts
    // through the socket sees the job's files.
    assert!(out_text.contains("| shared-file"), "{out_text}");
    assert!(!out_text.contains("dir /builds/"), "{out_text}");
    assert_eq!(err.matches("controls every container").count(), 1, "{err}");
}
