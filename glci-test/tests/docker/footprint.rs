//! `cargo glci system df|prune` against the real engine and disk: the numbers are the
//! engine's (`docker inspect --size`, `docker system df -v`) and `du`'s, and a prune removes
//! exactly what its plan lists. Every object here is made by the test with glci's labels and
//! a label of its own, and everything measured or pruned is filtered on that label: other
//! runs' objects on the shared engine are never looked at.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use glci_test::docker::{Engine, Owner, LABEL_OWNER, LABEL_OWNER_PID, LABEL_OWNER_START};
use glci_test::footprint::engine::{ImageKind, LabelFilter};
use glci_test::footprint::prune::{self, PruneOptions};
use glci_test::footprint::{engine_usage, home_usage};
use glci_test::pipeline::history::{self, PipelineRecord};

const BUSYBOX: &str = "glci-fixture/busybox:latest";
const SCOPE_LABEL: &str = "io.glci.test-scope";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `--label k=v` arguments for `labels`.
fn label_args(labels: &HashMap<String, String>) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
}

/// Owner labels of a process of this host that is gone.
fn dead_owner(scope: &str) -> HashMap<String, String> {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let mut labels = Owner::for_this_process(scope).labels();
    labels.insert(LABEL_OWNER_PID.to_string(), pid.to_string());
    labels.insert(LABEL_OWNER_START.to_string(), "1".to_string());
    labels.insert(LABEL_OWNER.to_string(), format!("{scope}-dead"));
    labels.insert(SCOPE_LABEL.to_string(), scope.to_string());
    labels
}

fn live_owner(scope: &str) -> HashMap<String, String> {
    let mut labels = Owner::for_this_process(scope).labels();
    labels.insert(SCOPE_LABEL.to_string(), scope.to_string());
    labels
}

fn exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([kind, "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}

/// `du -s -B1 [--apparent-size] path`.
fn du(path: &Path, apparent: bool) -> u64 {
    let mut cmd = Command::new("du");
    cmd.args(["-s", "-B1"]);
    if apparent {
        cmd.arg("--apparent-size");
    }
    let out = cmd.arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Removes what the test made, whatever the assertions said.
struct Leftovers(Vec<(&'static str, String)>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for (kind, name) in self.0.iter().rev() {
            let args: Vec<&str> = match *kind {
                "container" => vec!["rm", "-f", "-v", name],
                "image" => vec!["rmi", "-f", name],
                other => vec![other, "rm", name],
            };
            let _ = Command::new("docker").args(args).output();
        }
    }
}

#[tokio::test]
async fn df_shows_the_engines_and_dus_numbers_and_prune_removes_exactly_its_plan() {
    let engine = Engine::connect().await.expect("a Docker engine");
    let scope = format!("fp{}", std::process::id());
    let filter = LabelFilter::parse(&format!("{SCOPE_LABEL}={scope}"));
    let dead = dead_owner(&scope);
    let live = live_owner(&scope);
    let mut left = Leftovers(Vec::new());

    // A dead run's volume with 100 000 bytes, its exited container (20 000 bytes in its
    // writable layer), its network; a live run's container and network.
    let volume = format!("{scope}-vol");
    let mut args = vec!["volume", "create"];
    let dead_args = label_args(&dead);
    args.extend(dead_args.iter().map(String::as_str));
    args.push(&volume);
    docker(&args);
    left.0.push(("volume", volume.clone()));
    let dead_container = format!("{scope}-dead");
    let mount = format!("{volume}:/data");
    let mut args = vec!["run", "--name", &dead_container, "-v", &mount];
    args.extend(dead_args.iter().map(String::as_str));
    args.extend([
        BUSYBOX,
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /data/blob && head -c 20000 /dev/zero > /layer",
    ]);
    docker(&args);
    left.0.push(("container", dead_container.clone()));
    let dead_network = format!("{scope}-dead-net");
    let mut args = vec!["network", "create"];
    args.extend(dead_args.iter().map(String::as_str));
    args.push(&dead_network);
    docker(&args);
    left.0.push(("network", dead_network.clone()));
    let live_args = label_args(&live);
    let live_container = format!("{scope}-live");
    let mut args = vec!["create", "--name", &live_container];
    args.extend(live_args.iter().map(String::as_str));
    args.extend([BUSYBOX, "true"]);
    docker(&args);
    left.0.push(("container", live_container.clone()));
    let live_network = format!("{scope}-live-net");
    let mut args = vec!["network", "create"];
    args.extend(live_args.iter().map(String::as_str));
    args.push(&live_network);
    docker(&args);
    left.0.push(("network", live_network.clone()));
    // An image glci "built" (a fixture).
    let image = format!("glci-footprint-test:{scope}");
    docker(&[
        "commit",
        "--change",
        &format!("LABEL io.glci.fixture={scope}"),
        "--change",
        &format!("LABEL {SCOPE_LABEL}={scope}"),
        &dead_container,
        &image,
    ]);
    left.0.push(("image", image.clone()));

    // df: the engine's numbers.
    let usage = engine_usage(&engine, Some(&filter)).await.unwrap();
    let mut names: Vec<&str> = usage.containers.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, [dead_container.as_str(), live_container.as_str()]);
    for c in &usage.containers {
        let size_rw: u64 = docker(&["inspect", "--size", "-f", "{{.SizeRw}}", &c.name])
            .parse()
            .unwrap();
        assert_eq!(c.size, size_rw, "{}", c.name);
    }
    let dead_c = usage
        .containers
        .iter()
        .find(|c| c.name == dead_container)
        .unwrap();
    assert!(dead_c.size >= 20_000, "{}", dead_c.size);
    assert_eq!(usage.networks.len(), 2);
    assert_eq!(usage.volumes.len(), 1);
    assert_eq!(usage.volumes[0].size, Some(100_000));
    assert_eq!(usage.images.len(), 1);
    let img = &usage.images[0];
    assert_eq!(img.kind, ImageKind::Fixture);
    assert_eq!(img.tags, std::slice::from_ref(&image));
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", &image])
        .parse()
        .unwrap();
    assert_eq!(img.size, size);
    // `docker system df -v` prints the same image, rounded: its SIZE and UNIQUE SIZE.
    let df: serde_json::Value =
        serde_json::from_str(&docker(&["system", "df", "-v", "--format", "{{json .}}"])).unwrap();
    let row = df["Images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ID"].as_str() == Some(img.id.as_str()))
        .expect("the image in docker system df -v");
    assert_eq!(row["Size"], human(img.size, 3), "{row}");
    assert_eq!(row["UniqueSize"], human(img.unique_size(), 4), "{row}");
    let vrow = df["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Name"].as_str() == Some(volume.as_str()))
        .expect("the volume in docker system df -v");
    assert_eq!(vrow["Size"], human(100_000, 4), "{vrow}");

    // Without a filter: exactly the images the engine lists with glci's image labels, none
    // the user pulled (other runs build images meanwhile: a few tries).
    let mut agreed = false;
    for _ in 0..3 {
        let mut ours: Vec<String> = engine_usage(&engine, None)
            .await
            .unwrap()
            .images
            .into_iter()
            .map(|i| i.id)
            .collect();
        let mut theirs: Vec<String> = ["io.glci.fixture", "io.glci.relay-agent"]
            .iter()
            .flat_map(|l| {
                docker(&[
                    "images",
                    "-q",
                    "--no-trunc",
                    "--filter",
                    &format!("label={l}"),
                ])
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
            })
            .collect();
        ours.sort();
        ours.dedup();
        theirs.sort();
        theirs.dedup();
        if ours == theirs {
            agreed = true;
            break;
        }
    }
    assert!(
        agreed,
        "glci's images differ from docker images --filter label=..."
    );

    // A GLCI_HOME: a finished pipeline, a live one, the cache and the registry.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let finished = h.join("pipelines/1");
    history::write(
        &finished,
        &PipelineRecord::starting(1, Path::new("/src/p"), "push", None, false),
    )
    .unwrap();
    std::fs::create_dir_all(finished.join("jobs/build")).unwrap();
    std::fs::write(finished.join("jobs/build/job.log"), vec![b'x'; 5000]).unwrap();
    history::finish(&finished, "success").unwrap();
    let running = h.join("pipelines/2");
    history::write(
        &running,
        &PipelineRecord::starting(2, Path::new("/src/p"), "push", None, false),
    )
    .unwrap();
    std::fs::write(h.join("pipelines/last-id"), "2\n").unwrap();
    std::fs::create_dir_all(h.join("cache")).unwrap();
    std::fs::write(h.join("cache/abc.obj"), vec![0u8; 30_000]).unwrap();
    std::fs::create_dir_all(h.join("registry/blobs")).unwrap();
    std::fs::write(h.join("registry/blobs/x"), vec![0u8; 12_345]).unwrap();
    std::fs::create_dir_all(h.join("daemon")).unwrap();
    std::fs::write(h.join("daemon/daemon.log.1"), "old").unwrap();

    // df: du's numbers.
    let disk = home_usage(h);
    assert_eq!(disk.total().allocated, du(h, false));
    assert_eq!(disk.total().apparent, du(h, true));
    assert_eq!(disk.cache.apparent, du(&h.join("cache"), true));
    assert_eq!(disk.registry.allocated, du(&h.join("registry"), false));
    assert_eq!(disk.logs.apparent, 5000 + 3);

    // prune: the dead run's objects, the finished pipeline, the old daemon log; not the
    // live run's objects, not the image (a fixture), not the cache or the registry.
    let options = PruneOptions {
        all: false,
        filter: Some(filter.clone()),
    };
    let plan = prune::plan(Some(&engine), None, h, &options).await.unwrap();
    assert_eq!(
        plan.containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
        [&dead_container]
    );
    assert_eq!(
        plan.networks.iter().map(|n| &n.name).collect::<Vec<_>>(),
        [&dead_network]
    );
    assert_eq!(
        plan.volumes.iter().map(|v| &v.name).collect::<Vec<_>>(),
        [&volume]
    );
    assert!(plan.images.is_empty());
    assert_eq!(plan.pipelines.iter().map(|p| p.id).collect::<Vec<_>>(), [1]);
    assert_eq!(plan.logs.len(), 1);
    assert!(plan.cache.is_none() && plan.stores.is_empty());
    assert_eq!(plan.kept_live_objects, 2);
    assert_eq!(plan.kept_live_pipelines, 1);
    assert_eq!(
        plan.disk().allocated,
        du(&finished, false) + du(&h.join("daemon/daemon.log.1"), false)
    );

    let report = prune::execute(Some(&engine), h, &plan).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        (
            report.containers,
            report.networks,
            report.volumes,
            report.pipelines,
            report.logs
        ),
        (1, 1, 1, 1, 1)
    );
    assert!(!exists("container", &dead_container));
    assert!(!exists("network", &dead_network));
    assert!(!exists("volume", &volume));
    assert!(exists("container", &live_container));
    assert!(exists("network", &live_network));
    assert!(exists("image", &image));
    assert!(!finished.exists() && running.exists());
    assert!(h.join("pipelines/last-id").exists());
    assert!(h.join("cache/abc.obj").exists() && h.join("registry/blobs/x").exists());

    // --all while a run is live: the image and the cache go, the registry stays.
    let all = PruneOptions {
        all: true,
        filter: Some(filter.clone()),
    };
    let plan = prune::plan(Some(&engine), None, h, &all).await.unwrap();
    assert!(plan.containers.is_empty() && plan.networks.is_empty());
    assert_eq!(
        plan.images.iter().map(|i| &i.tags[0]).collect::<Vec<_>>(),
        [&image]
    );
    assert_eq!(plan.cache.map(|c| c.files), Some(1));
    assert!(plan.stores.is_empty() && plan.kept_stores_for_live_runs);
    let report = prune::execute(Some(&engine), h, &plan).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!((report.images, report.cache_objects), (1, 1));
    assert!(!exists("image", &image));
    assert!(exists("container", &live_container));
    assert!(!h.join("cache/abc.obj").exists() && h.join("registry/blobs/x").exists());

    // Once no run is live, --all takes the registry too.
    history::finish(&running, "success").unwrap();
    let plan = prune::plan(Some(&engine), None, h, &all).await.unwrap();
    assert_eq!(
        plan.stores
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["registry"]
    );
    let report = prune::execute(Some(&engine), h, &plan).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(!h.join("registry").exists() && !running.exists());
    assert!(
        exists("container", &live_container),
        "a live run's objects are never pruned"
    );
}

/// Docker's `units.HumanSizeWithPrecision(size, precision)` as `docker system df -v` prints
/// sizes: decimal units, `%.{precision}g`, no space (`118MB`, `100kB`, `0B`).
fn human(bytes: u64, precision: i32) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value == 0.0 {
        1
    } else {
        value.abs().log10().floor() as i32 + 1
    };
    let decimals = (precision - digits).max(0) as usize;
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}
