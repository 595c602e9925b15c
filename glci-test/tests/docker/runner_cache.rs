//! The job cache end to end with real parts: the mock GitLab (runner API + S3 endpoint that
//! verifies SigV4), glci's runner taking jobs over the API, and jobs in Docker
//! (`glci-fixture/busybox:latest`, built by `scripts/fixture-images`). Each test has its own
//! server and data directory, so caches never leak between tests, and checks that no Docker
//! object of its owner is left behind.

use std::time::{Duration, SystemTime};

use crate::support::git;
use glci_test::docker::{count_labelled, Engine, Owner, LABEL_OWNER};
use glci_test::git::{snapshot, Repo, SnapshotRequest};
use glci_test::pipeline::run::runner_cache_config;
use glci_test::runner::api::RunnerApi;
use glci_test::runner::cache::CacheConfig;
use glci_test::runner::executor::ExecutorOptions;
use glci_test::runner::worker::run_job;
use glci_test::server::{
    CacheSpec, GitSpec, ImageSpec, JobSpec, JobState, JobVariable, ProjectSpec, RunningServer,
    Server, ServerConfig, StepSpec,
};
use tokio_util::sync::CancellationToken;

/// The default identity's short token: objects live under `runner/<it>/project/3/`.
const SHORT_TOKEN: &str = "glci00000";

/// One server with one project, a runner, a Docker engine and an owner for this test.
struct Env {
    _tmp: tempfile::TempDir,
    server: RunningServer,
    api: RunnerApi,
    token: String,
    sha: String,
    engine: Engine,
    owner: Owner,
}

impl Env {
    async fn new(name: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let repo_dir = tmp.path().join("repo");
        std::fs::create_dir(&repo_dir).unwrap();
        git(&repo_dir, &["init", "-q", "-b", "main"]);
        git(&repo_dir, &["config", "user.email", "dev@example.com"]);
        git(&repo_dir, &["config", "user.name", "Dev"]);
        std::fs::write(repo_dir.join("README"), "demo\n").unwrap();
        git(&repo_dir, &["add", "README"]);
        git(&repo_dir, &["commit", "-q", "-m", "first"]);
        let data = tmp.path().join("data");
        let repo = Repo::discover(&repo_dir).unwrap();
        let snap = snapshot(
            &repo,
            &data,
            &SnapshotRequest {
                pipeline_id: 1,
                branch: Some("main".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let server = Server::start(ServerConfig::new(data.join("server")))
            .await
            .unwrap();
        server.add_repository("acme/demo", &snap.bare_repo).unwrap();
        let creds = server.create_runner(&[], true);
        let api = RunnerApi::new(server.url());
        let engine = Engine::connect()
            .await
            .expect("a Docker engine (scripts/docker-engine)");
        Env {
            _tmp: tmp,
            server,
            api,
            token: creds.token,
            sha: snap.sha,
            engine,
            owner: Owner::for_this_process(format!("runner-cache-{name}")),
        }
    }

    fn spec(
        &self,
        pipeline_id: u64,
        name: &str,
        script: &[&str],
        cache: Vec<CacheSpec>,
    ) -> JobSpec {
        JobSpec {
            name: name.to_string(),
            stage: "test".to_string(),
            pipeline_id,
            project: ProjectSpec {
                id: 3,
                path: "acme/demo".to_string(),
                namespace_id: 2,
                root_namespace_id: 2,
            },
            image: Some(ImageSpec {
                name: "glci-fixture/busybox:latest".to_string(),
                ..Default::default()
            }),
            variables: vec![JobVariable::public("CI_JOB_NAME", name)],
            steps: vec![StepSpec {
                name: "script".to_string(),
                script: script.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }],
            timeout_secs: 600,
            git: GitSpec {
                ref_name: "main".to_string(),
                sha: self.sha.clone(),
                refspecs: vec!["+refs/pipelines/1:refs/pipelines/1".to_string()],
                depth: 20,
                ..Default::default()
            },
            cache,
            ..Default::default()
        }
    }

    fn cache_config(&self) -> CacheConfig {
        runner_cache_config(&self.server.s3_credentials(), false)
    }

    /// [`Env::run`] of [`Env::spec`] with the server's S3 cache configured.
    async fn run_cached(
        &self,
        pipeline_id: u64,
        name: &str,
        script: &[&str],
        cache: Vec<CacheSpec>,
    ) -> (JobState, String) {
        self.run(
            self.spec(pipeline_id, name, script, cache),
            Some(self.cache_config()),
        )
        .await
    }

    /// Queues the job, lets the runner take and run it; returns its final state and log.
    async fn run(&self, spec: JobSpec, cache: Option<CacheConfig>) -> (JobState, String) {
        let id = self.server.enqueue(spec).unwrap();
        let (job, _) = self
            .api
            .request_job(&self.token, None)
            .await
            .expect("request job");
        let job = job.expect("a job is queued");
        let options = ExecutorOptions {
            cache,
            ..ExecutorOptions::default()
        };
        run_job(
            &self.api,
            &self.engine,
            &self.owner,
            job,
            &options,
            &CancellationToken::new(),
            None,
        )
        .await;
        let log = String::from_utf8_lossy(&self.server.trace(id).unwrap()).into_owned();
        (self.server.job_state(id).unwrap(), log)
    }

    /// The presigned URL for `method` on a cache key of project 3.
    fn url(&self, method: &str, key: &str) -> String {
        let config = self.cache_config();
        let object = config.object_key(SHORT_TOKEN, 3, key).unwrap();
        config.s3.presign(
            method,
            &object,
            &[],
            Duration::from_secs(300),
            SystemTime::now(),
        )
    }

    /// HTTP status of a presigned HEAD on the cache object (200: stored, 404: not).
    async fn object_status(&self, key: &str) -> u16 {
        curl_status(&["-I", &self.url("HEAD", key)]).await
    }

    async fn finish(self) {
        assert_no_leftovers(&self.engine, &self.owner).await;
        self.server.shutdown().await;
    }
}

/// curl's answer status. Async: the server shares this test's runtime, so a blocking wait
/// would keep it from answering.
async fn curl_status(args: &[&str]) -> u16 {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

async fn assert_no_leftovers(engine: &Engine, owner: &Owner) {
    let label = format!("{LABEL_OWNER}={}", owner.id);
    let left = count_labelled(engine, &label).await.unwrap();
    assert!(
        left.containers == 0 && left.networks == 0,
        "left behind: {left:?}"
    );
}

fn cache(key: &str, paths: &[&str]) -> CacheSpec {
    CacheSpec {
        key: key.to_string(),
        paths: paths.iter().map(|s| s.to_string()).collect(),
        policy: "pull-push".to_string(),
        when: "on_success".to_string(),
        ..Default::default()
    }
}

fn assert_in_order(log: &str, expected: &[&str]) {
    let mut at = 0;
    for e in expected {
        match log[at..].find(e) {
            Some(i) => at += i + e.len(),
            None => panic!("missing {e:?} (in this order) in:\n{log}"),
        }
    }
}

#[tokio::test]
async fn a_cache_saved_by_one_pipeline_is_restored_in_the_next() {
    let env = Env::new("restore").await;
    let key = "deps-non_protected";
    let (state, log) = env
        .run_cached(
            1,
            "build",
            &["mkdir -p vendor && echo from-pipeline-1 > vendor/dep.txt"],
            vec![cache(key, &["vendor/"])],
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");
    assert_in_order(
        &log,
        &[
            "Restoring cache",
            "Checking cache for deps-non_protected...",
            "WARNING: file does not exist",
            "Failed to extract cache",
            "$ mkdir -p vendor",
            "Saving cache for successful job",
            "Creating cache deps-non_protected...",
            "vendor/: found 2 matching artifact files and directories",
            "Uploading cache.zip to http://",
            "/glci-cache/runner/glci00000/project/3/deps-non_protected",
            "Created cache",
            "Job succeeded",
        ],
    );
    assert!(
        !log.contains("X-Amz-Signature"),
        "signed URLs stay out of the log:\n{log}"
    );
    assert_eq!(env.object_status(key).await, 200);

    let (state, log) = env
        .run_cached(
            2,
            "test",
            &["cat vendor/dep.txt"],
            vec![cache(key, &["vendor/"])],
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");
    assert_in_order(
        &log,
        &[
            "Checking cache for deps-non_protected...",
            "Downloading cache from http://",
            "Successfully extracted cache",
            "$ cat vendor/dep.txt",
            "from-pipeline-1",
        ],
    );
    env.finish().await;
}

#[tokio::test]
async fn policy_pull_restores_but_never_uploads() {
    let env = Env::new("pull").await;
    let mut entry = cache("pulled-non_protected", &["out"]);
    entry.policy = "pull".into();
    let (state, log) = env
        .run_cached(
            1,
            "reader",
            &["mkdir -p out && echo x > out/x"],
            vec![entry],
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");
    assert!(
        log.contains("Checking cache for pulled-non_protected..."),
        "{log}"
    );
    assert!(
        log.contains("Not uploading cache pulled-non_protected due to policy"),
        "{log}"
    );
    assert!(!log.contains("Creating cache"), "{log}");
    assert_eq!(env.object_status("pulled-non_protected").await, 404);
    env.finish().await;
}

#[tokio::test]
async fn when_on_failure_saves_only_after_a_failed_script() {
    let env = Env::new("on-failure").await;
    let mut entry = cache("debug-non_protected", &["logs"]);
    entry.when = "on_failure".into();
    let (state, log) = env
        .run_cached(
            1,
            "passes",
            &["mkdir -p logs && echo ok > logs/a"],
            vec![entry.clone()],
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");
    assert!(!log.contains("Saving cache"), "{log}");
    assert_eq!(env.object_status("debug-non_protected").await, 404);

    let (state, log) = env
        .run_cached(
            2,
            "fails",
            &["mkdir -p logs && echo boom > logs/a", "exit 3"],
            vec![entry],
        )
        .await;
    assert!(
        matches!(
            state,
            JobState::Failed {
                exit_code: Some(3),
                ..
            }
        ),
        "{state:?}: {log}"
    );
    assert_in_order(
        &log,
        &[
            "Saving cache for failed job",
            "Creating cache debug-non_protected...",
            "Created cache",
            "ERROR: Job failed: exit code 3",
        ],
    );
    assert_eq!(env.object_status("debug-non_protected").await, 200);
    env.finish().await;
}

#[tokio::test]
async fn fallback_keys_then_cache_fallback_key_are_tried_when_the_key_misses() {
    let env = Env::new("fallback").await;
    let (state, log) = env
        .run_cached(
            1,
            "main",
            &["mkdir -p deps && echo from-main > deps/d"],
            vec![cache("main-non_protected", &["deps"])],
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");

    // fallback_keys
    let mut entry = cache("feature-non_protected", &["deps"]);
    entry.policy = "pull".into();
    entry.fallback_keys = vec!["gone-non_protected".into(), "main-non_protected".into()];
    let (state, log) = env
        .run_cached(2, "feature", &["cat deps/d"], vec![entry])
        .await;
    assert_eq!(state, JobState::Success, "{log}");
    assert_in_order(
        &log,
        &[
            "Checking cache for feature-non_protected...",
            "WARNING: file does not exist",
            "Failed to extract cache",
            "Checking cache for gone-non_protected...",
            "Failed to extract cache",
            "Checking cache for main-non_protected...",
            "Successfully extracted cache",
            "from-main",
        ],
    );

    // CACHE_FALLBACK_KEY, after the entry's own keys.
    let mut spec = env.spec(
        3,
        "other",
        &["cat deps/d"],
        vec![cache("other-non_protected", &["deps"])],
    );
    spec.variables.push(JobVariable::public(
        "CACHE_FALLBACK_KEY",
        "main-non_protected",
    ));
    let (state, log) = env.run(spec, Some(env.cache_config())).await;
    assert_eq!(state, JobState::Success, "{log}");
    assert_in_order(
        &log,
        &[
            "Checking cache for other-non_protected...",
            "Failed to extract cache",
            "Checking cache for main-non_protected...",
            "Successfully extracted cache",
            "from-main",
        ],
    );
    env.finish().await;
}

#[tokio::test]
async fn a_broken_cache_endpoint_only_warns() {
    let env = Env::new("broken").await;
    let mut broken = env.cache_config();
    // Nothing listens on port 1 of the loopback.
    broken.s3.server_address = "127.0.0.1:1".into();
    let (state, log) = env
        .run(
            env.spec(
                1,
                "build",
                &["mkdir -p vendor && echo v > vendor/v"],
                vec![cache("deps-non_protected", &["vendor"])],
            ),
            Some(broken),
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");
    assert_in_order(
        &log,
        &[
            "Checking cache for deps-non_protected...",
            "WARNING: GET http://127.0.0.1:1/glci-cache/runner/glci00000/project/3/deps-non_protected",
            "Failed to extract cache",
            "Creating cache deps-non_protected...",
            "WARNING: PUT http://127.0.0.1:1/",
            "Failed to create cache",
            "Job succeeded",
        ],
    );
    env.finish().await;
}

#[tokio::test]
async fn without_a_cache_config_the_job_runs_and_says_why_nothing_is_cached() {
    let env = Env::new("none").await;
    let (state, log) = env
        .run(
            env.spec(
                1,
                "build",
                &["mkdir -p vendor && echo v > vendor/v"],
                vec![cache("deps-non_protected", &["vendor"])],
            ),
            None,
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");
    assert!(
        log.contains("No URL provided, cache will not be downloaded from shared cache server."),
        "{log}"
    );
    assert!(log.contains("Cache will be stored only locally."), "{log}");
    assert_eq!(env.object_status("deps-non_protected").await, 404);
    env.finish().await;
}

#[tokio::test]
async fn an_independent_client_needs_a_valid_signature_to_read_the_cache() {
    let env = Env::new("curl").await;
    let key = "secret-non_protected";
    let (state, log) = env
        .run_cached(
            1,
            "build",
            &["mkdir -p out && echo s3cr3t-cache > out/s"],
            vec![cache(key, &["out"])],
        )
        .await;
    assert_eq!(state, JobState::Success, "{log}");

    let signed = env.url("GET", key);
    let unsigned = signed.split('?').next().unwrap().to_string();
    assert_eq!(curl_status(&[&unsigned]).await, 403, "no signature");
    let tampered = format!("{}0", &signed[..signed.len() - 1]);
    let tampered = if tampered == signed {
        format!("{}1", &signed[..signed.len() - 1])
    } else {
        tampered
    };
    assert_eq!(curl_status(&[&tampered]).await, 403, "altered signature");
    // A URL signed for HEAD does not allow GET.
    assert_eq!(
        curl_status(&[&env.url("HEAD", key)]).await,
        403,
        "signed for HEAD"
    );
    // Signed for another object: the path is part of the signature.
    let other = env.url("GET", "other-non_protected");
    let swapped = other.replace("other-non_protected", key);
    assert_eq!(
        curl_status(&[&swapped]).await,
        403,
        "signed for another key"
    );
    // The valid URL works for curl too, and serves the zip the job made.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--fail", &signed])
        .output()
        .await
        .expect("curl");
    assert!(out.status.success(), "valid presigned GET refused");
    assert!(out.stdout.starts_with(b"PK"), "not a zip");
    env.finish().await;
}
