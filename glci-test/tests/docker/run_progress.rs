//! Progress of an image pull, layer by layer, from the engine's pull stream: an image of
//! three fresh layers pushed to glci's registry, then pulled by a job (`pull_policy: always`)
//! after its local copy is removed. The run's observer hears each layer's download and
//! extraction; the job's log says only that the image is pulled, as GitLab's does.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};

use glci_test::pipeline::{self, PipelineOptions, RunObserver, RunOptions, Session};
use glci_test::plan::status::Status;
use glci_test::runner::progress::{Amount, LayerStep, ProgressEvent, Task};
use glci_test::server::{Server, ServerConfig};

const PIPELINE: &str = r#"
pull:
  image:
    name: $CI_REGISTRY_IMAGE/layers:1
    pull_policy: always
  variables:
    GIT_STRATEGY: none
  script:
    - ls -l /layer-0 /layer-1 /layer-2
"#;

/// Bytes of each fresh layer: incompressible, and enough for the engine to report its
/// download in steps.
const LAYER_BYTES: usize = 3 << 20;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

/// Removes the given local tags when the test ends, passing or not.
struct Untag(Mutex<Vec<String>>);
impl Drop for Untag {
    fn drop(&mut self) {
        for tag in self.0.lock().unwrap().iter() {
            let _ = docker(&["rmi", tag]);
        }
    }
}

/// Bytes no earlier run made (xorshift seeded with the clock): the layers are new to the
/// engine, so it pulls them instead of finding them.
fn fresh_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Default)]
struct Heard(Mutex<Vec<ProgressEvent>>);
impl RunObserver for Heard {
    fn progress(&self, event: &ProgressEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_reports_each_layer_to_the_observer_and_not_to_the_log() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".gitlab-ci.yml"), PIPELINE).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "one"],
    ] {
        crate::support::git(project.path(), args);
    }
    let home = tempfile::tempdir().unwrap();
    let untag = Untag(Mutex::new(Vec::new()));

    // An image of three fresh layers on the busybox fixture.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let context = tempfile::tempdir().unwrap();
    let mut dockerfile = String::from("FROM glci-fixture/busybox:latest\n");
    for i in 0..3u64 {
        std::fs::write(
            context.path().join(format!("layer-{i}")),
            fresh_bytes(seed + i, LAYER_BYTES),
        )
        .unwrap();
        dockerfile.push_str(&format!("COPY layer-{i} /layer-{i}\n"));
    }
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    let built = format!("glci-progress-test:{seed}");
    untag.0.lock().unwrap().push(built.clone());

    // Pushed to the registry of an earlier "run" on the same GLCI_HOME.
    let planned = pipeline::plan(&PipelineOptions::new(project.path())).unwrap();
    let path = planned
        .predefined
        .iter()
        .find(|(k, _)| k == "CI_PROJECT_PATH")
        .map(|(_, v)| v.to_lowercase())
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(scratch.path().join("data"));
    config.registry.dir = Some(home.path().join("registry"));
    let server = Server::start(config).await.unwrap();
    let creds = server.registry_credentials();
    let pushed = format!("{}/{path}/layers:1", creds.address);
    untag.0.lock().unwrap().push(pushed.clone());
    let docker_config = scratch.path().join("docker");
    let (context_dir, pushed_tag, built_tag) =
        (context.path().to_path_buf(), pushed.clone(), built.clone());
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let out = Command::new("docker")
                .env("DOCKER_CONFIG", &docker_config)
                .env("DOCKER_BUILDKIT", "0")
                .args(args)
                .output()
                .expect("docker runs");
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let context = context_dir.to_str().unwrap();
        run(&[
            "build",
            "-q",
            "--label",
            "io.glci.test=progress",
            "-t",
            &built_tag,
            context,
        ]);
        run(&[
            "login",
            &creds.address,
            "-u",
            &creds.username,
            "-p",
            &creds.password,
        ]);
        run(&["tag", &built_tag, &pushed_tag]);
        run(&["push", &pushed_tag]);
        // Gone from the engine: the job's pull must fetch every fresh layer.
        run(&["rmi", &pushed_tag, &built_tag]);
    })
    .await
    .unwrap();
    server.shutdown().await;

    let heard = Arc::new(Heard::default());
    let options = RunOptions {
        home: Some(home.path().to_path_buf()),
        ..RunOptions::default()
    };
    let session = Session::start(
        &PipelineOptions::new(project.path()),
        options,
        heard.clone(),
    )
    .await
    .expect("session");
    let report = session.run(&[]).await.unwrap();
    session.shutdown().await;
    let listed = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    untag.0.lock().unwrap().extend(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| l.ends_with(&format!("/{path}/layers:1")))
            .map(str::to_string),
    );
    let job = report.job("pull").unwrap();
    assert_eq!(job.status, Status::Success, "{}", job.log);

    let events = heard.0.lock().unwrap().clone();
    let of_step = |step: LayerStep, finished: bool| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| e.job == "pull" && e.finished == finished)
            .filter_map(|e| match &e.task {
                Task::Layer {
                    layer,
                    step: s,
                    image,
                } if *s == step => {
                    assert!(image.ends_with("/layers:1"), "{image}");
                    Some(layer.clone())
                }
                _ => None,
            })
            .collect()
    };
    // The three fresh layers (the fixture's own layer is already present: not pulled).
    let downloaded = of_step(LayerStep::Download, true);
    assert_eq!(downloaded.len(), 3, "{events:#?}");
    assert_eq!(of_step(LayerStep::Extract, true), downloaded, "{events:#?}");
    // Bytes as they arrive, of a known size.
    assert!(
        events.iter().any(|e| matches!(
            (&e.task, e.amount, e.finished),
            (
                Task::Layer { step: LayerStep::Download, .. },
                Amount::Bytes { done, total: Some(total) },
                false
            ) if done > 0 && done < total
        )),
        "{events:#?}"
    );
    // Every layer that started ends.
    let started: BTreeSet<String> = of_step(LayerStep::Download, false);
    assert!(started.is_subset(&downloaded), "{events:#?}");

    // The log says the image is pulled, as GitLab's does; the stream stays out of it.
    assert!(job.log.contains("Pulling docker image"), "{}", job.log);
    for noise in [
        "Downloading",
        "Extracting",
        "Pull complete",
        "Download complete",
    ] {
        assert!(!job.log.contains(noise), "{noise}: {}", job.log);
    }
}
