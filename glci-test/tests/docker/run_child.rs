//! Child pipelines at run time: a trigger job creates its child pipeline and the child's jobs
//! run in the same session, reported as `<trigger>/<job>` — generated at run time
//! (`include: artifact:`) with `strategy: depend`, a `local:` child that needs the parent's
//! artifacts (`needs:pipeline:job`), nesting up to GitLab's depth, and multi-project triggers.

use std::path::Path;
use std::sync::Arc;

use glci_test::pipeline::{PipelineOptions, Quiet, RunOptions, RunReport, Session};
use glci_test::plan::status::Status;

fn commit(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "one"],
    ] {
        crate::support::git(dir, args);
    }
}

async fn run(options: PipelineOptions) -> RunReport {
    let home = tempfile::tempdir().unwrap();
    let run = RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(&options, run, Arc::new(Quiet))
        .await
        .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    report
}

fn names(report: &RunReport) -> Vec<(&str, &str)> {
    report
        .jobs
        .iter()
        .map(|j| (j.name.as_str(), j.status.as_str()))
        .collect()
}

const GENERATE: &str = r#"
stages: [build, child, after]
generate:
  stage: build
  image: glci-fixture/busybox:latest
  script:
    - |
      cat > child.yml <<EOF
      ok:
        image: glci-fixture/busybox:latest
        script: [echo "child of \$PARENT_ID source \$CI_PIPELINE_SOURCE"]
      broken:
        image: glci-fixture/busybox:latest
        script: [exit $CHILD_EXIT]
      EOF
  artifacts:
    paths: [child.yml]
run-child:
  stage: child
  needs: [generate]
  variables:
    PARENT_ID: $CI_PIPELINE_ID
  trigger:
    include:
      - artifact: child.yml
        job: generate
    strategy: depend
after:
  stage: after
  image: glci-fixture/busybox:latest
  script: [echo after]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_child_runs_and_a_failing_child_job_fails_the_depending_trigger() {
    let project = tempfile::tempdir().unwrap();
    commit(project.path(), &[(".gitlab-ci.yml", GENERATE)]);
    let mut options = PipelineOptions::new(project.path());
    options.add_var("CHILD_EXIT", "4");
    let report = run(options).await;
    assert_eq!(
        names(&report),
        [
            ("generate", "success"),
            ("run-child", "failed"),
            ("run-child/ok", "success"),
            ("run-child/broken", "failed"),
            ("after", "skipped"),
        ],
        "{report:#?}"
    );
    let ok = report.job("run-child/ok").unwrap();
    // The trigger's YAML variables reach the child expanded, with the parent's id.
    assert!(
        ok.log.contains(&format!(
            "child of {} source parent_pipeline",
            report.pipeline_id
        )),
        "{}",
        ok.log
    );
    let trigger = report.job("run-child").unwrap();
    assert!(
        trigger.log.contains("Downstream pipeline status: failed"),
        "{}",
        trigger.log
    );
    assert_eq!(report.status, Status::Failed);

    // The same child passing: the trigger mirrors it and the pipeline goes on.
    let project = tempfile::tempdir().unwrap();
    commit(project.path(), &[(".gitlab-ci.yml", GENERATE)]);
    let mut options = PipelineOptions::new(project.path());
    options.add_var("CHILD_EXIT", "0");
    let report = run(options).await;
    assert_eq!(report.job("run-child").unwrap().status, Status::Success);
    assert_eq!(report.job("after").unwrap().status, Status::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_child_gets_the_parents_artifacts_through_needs_pipeline_job() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[
            (
                ".gitlab-ci.yml",
                r#"
stages: [build, child]
build:
  stage: build
  image: glci-fixture/busybox:latest
  script: [echo built-in-parent > out.txt]
  artifacts:
    paths: [out.txt]
child:
  stage: child
  variables:
    PARENT_PIPELINE_ID: $CI_PIPELINE_ID
  trigger:
    include: ci/child.yml
"#,
            ),
            (
                "ci/child.yml",
                r#"
use:
  image: glci-fixture/busybox:latest
  needs:
    - pipeline: $PARENT_PIPELINE_ID
      job: build
  script: [cat out.txt]
"#,
            ),
        ],
    );
    let report = run(PipelineOptions::new(project.path())).await;
    assert_eq!(
        names(&report),
        [
            ("build", "success"),
            ("child", "success"),
            ("child/use", "success")
        ],
        "{report:#?}"
    );
    let used = report.job("child/use").unwrap();
    assert!(used.log.contains("built-in-parent"), "{}", used.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn children_nest_two_levels_and_a_third_fails_with_gitlabs_reason() {
    let project = tempfile::tempdir().unwrap();
    let job = "  image: glci-fixture/busybox:latest\n  script: [echo hi]\n";
    commit(
        project.path(),
        &[
            (
                ".gitlab-ci.yml",
                "one:\n  trigger:\n    include: one.yml\n    strategy: depend\n",
            ),
            (
                "one.yml",
                &format!(
                    "j1:\n{job}two:\n  trigger:\n    include: two.yml\n    strategy: depend\n"
                ),
            ),
            (
                "two.yml",
                &format!("j2:\n{job}three:\n  trigger:\n    include: three.yml\n"),
            ),
            ("three.yml", &format!("j3:\n{job}")),
        ],
    );
    let report = run(PipelineOptions::new(project.path())).await;
    assert_eq!(
        names(&report),
        [
            ("one", "failed"),
            ("one/j1", "success"),
            ("one/two", "failed"),
            ("one/two/j2", "success"),
            ("one/two/three", "failed"),
        ],
        "{report:#?}"
    );
    let three = report.job("one/two/three").unwrap();
    assert_eq!(
        three.failure_reason.as_deref(),
        Some("reached_max_descendant_pipelines_depth")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_that_cannot_be_created_fails_its_trigger_with_the_reason() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[(
            ".gitlab-ci.yml",
            "child:\n  trigger:\n    include: missing.yml\n",
        )],
    );
    let report = run(PipelineOptions::new(project.path())).await;
    let child = report.job("child").unwrap();
    assert_eq!(child.status, Status::Failed);
    assert_eq!(
        child.failure_reason.as_deref(),
        Some("downstream_pipeline_creation_failed")
    );
    let why = child.not_run_because.as_deref().unwrap_or_default();
    assert!(
        why.contains("Local file `missing.yml` does not exist!"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmapped_multi_project_trigger_is_skipped_with_how_to_map_it() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[(
            ".gitlab-ci.yml",
            "deploy:\n  trigger:\n    project: group/other\nafter:\n  image: glci-fixture/busybox:latest\n  script: [echo hi]\n",
        )],
    );
    let report = run(PipelineOptions::new(project.path())).await;
    let deploy = report.job("deploy").unwrap();
    assert_eq!(deploy.status, Status::Skipped, "{report:#?}");
    let why = deploy.not_run_because.as_deref().unwrap_or_default();
    assert!(why.contains("--project group/other=PATH"), "{why}");
    assert_eq!(report.job("after").unwrap().status, Status::Success);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapped_multi_project_trigger_runs_that_projects_pipeline() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[(
            ".gitlab-ci.yml",
            "deploy:\n  variables:\n    FROM: upstream-$CI_PIPELINE_ID\n  trigger:\n    project: group/other\n    strategy: depend\n",
        )],
    );
    let other = tempfile::tempdir().unwrap();
    commit(
        other.path(),
        &[(
            ".gitlab-ci.yml",
            "job:\n  image: glci-fixture/busybox:latest\n  script: [echo \"from $FROM source $CI_PIPELINE_SOURCE\"]\n",
        )],
    );
    let mut options = PipelineOptions::new(project.path());
    options
        .project_map
        .insert("group/other".into(), other.path().to_path_buf());
    let report = run(options).await;
    assert_eq!(
        names(&report),
        [("deploy", "success"), ("deploy/job", "success")],
        "{report:#?}"
    );
    let job = report.job("deploy/job").unwrap();
    assert!(
        job.log.contains(&format!(
            "from upstream-{} source pipeline",
            report.pipeline_id
        )),
        "{}",
        job.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn projects_that_trigger_each_other_stop_with_pipeline_loop_detected() {
    // group/a triggers group/b, which triggers group/a: GitLab lets the chain a, b, a be
    // created and fails the next trigger, whose upstream runs group/a on main twice.
    let checkout = |name: &str, other: &str| {
        let dir = tempfile::tempdir().unwrap();
        commit(
            dir.path(),
            &[(
                ".gitlab-ci.yml",
                &format!(
                    "to_{other}:\n  trigger:\n    project: group/{other}\n    strategy: depend\n"
                ),
            )],
        );
        let url = format!("https://gitlab.example.com/group/{name}.git");
        crate::support::git(dir.path(), &["remote", "add", "origin", &url]);
        dir
    };
    let (a, b) = (checkout("a", "b"), checkout("b", "a"));
    let mut options = PipelineOptions::new(a.path());
    options
        .project_map
        .insert("group/a".into(), a.path().to_path_buf());
    options
        .project_map
        .insert("group/b".into(), b.path().to_path_buf());
    let report = run(options).await;
    assert_eq!(
        names(&report),
        [
            ("to_b", "failed"),
            ("to_b/to_a", "failed"),
            ("to_b/to_a/to_b", "failed"),
        ],
        "{report:#?}"
    );
    let looped = report.job("to_b/to_a/to_b").unwrap();
    assert_eq!(
        looped.failure_reason.as_deref(),
        Some("pipeline_loop_detected"),
        "{looped:#?}"
    );
    assert!(
        looped
            .log
            .contains("job would create infinitely looping pipelines"),
        "{}",
        looped.log
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn canceling_the_session_cancels_a_running_child_job() {
    let project = tempfile::tempdir().unwrap();
    commit(
        project.path(),
        &[
            (
                ".gitlab-ci.yml",
                "child:\n  trigger:\n    include: child.yml\n    strategy: depend\n",
            ),
            (
                "child.yml",
                "slow:\n  image: glci-fixture/busybox:latest\n  script: [echo started, sleep 120]\n",
            ),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let run_options = RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    let session = Arc::new(
        Session::start(
            &PipelineOptions::new(project.path()),
            run_options,
            Arc::new(Quiet),
        )
        .await
        .expect("session"),
    );
    let started = std::time::Instant::now();
    let canceler = {
        let session = Arc::clone(&session);
        tokio::spawn(async move {
            // Once the child's job has had time to start.
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
            session.cancel();
        })
    };
    let report = session.run(&[]).await.unwrap();
    canceler.await.unwrap();
    let session = Arc::try_unwrap(session).ok().expect("one session handle");
    session.shutdown().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the child's job was not canceled: {report:#?}"
    );
    assert_eq!(
        names(&report),
        [("child", "canceled"), ("child/slow", "canceled")],
        "{report:#?}"
    );
    assert_eq!(report.status, Status::Canceled);
}
