//! `pipeline::plan` (load + resolve + validate + plan, git facts included) on a generated
//! 1,000-job pipeline in a real temporary git repository. Goal: ≤ 50 ms per plan.
//!
//! A plain `harness = false` bench (criterion is not in the offline registry): it runs the
//! whole plan `GLCI_BENCH_ITERS` times (default 30) after a warm-up, prints median/min/max,
//! then the median of each phase so a miss points at the module at fault.
//!
//! Run: `cargo bench -p glci-test --bench plan`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use glci_test::config::{self, LoadOptions};
use glci_test::git::Repo;
use glci_test::pipeline::{self, PipelineOptions};
use glci_test::plan::predefined::{self, PipelineContext};
use glci_test::plan::{self as planner, Event, PipelineSource, PlanContext};

const STAGES: usize = 10;
/// Plain jobs; with `MATRIX_JOBS` × 4 matrix instances they make 1,000 planned jobs.
const PLAIN_JOBS: usize = 900;
const MATRIX_JOBS: usize = 25;
const PLANNED_JOBS: usize = PLAIN_JOBS + MATRIX_JOBS * 4;

/// The pipeline: anchors and `<<` merge keys for shared settings, `extends` chains, script and
/// rules shared with `!reference`, `rules` with `if`/`changes`, `needs` on the previous stage's
/// job (and on matrix instances by selector), `parallel:matrix` jobs of four instances.
fn generate() -> String {
    let mut y = String::new();
    y.push_str("stages:\n");
    for s in 0..STAGES {
        let _ = writeln!(y, "  - s{s}");
    }
    y.push_str(
        r#"
variables:
  GLOBAL: "yes"
  CARGO_HOME: $CI_PROJECT_DIR/.cargo

workflow:
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_TAG
    - if: $CI_COMMIT_BRANCH

.settings: &settings
  image: rust:1.89
  tags: [docker]
  retry: 1
  interruptible: true

.shared:
  script:
    - cargo build --locked
    - cargo test --locked
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      changes: [src/**/*, Cargo.toml]
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
    - if: $CI_COMMIT_TAG =~ /^v\d+/
      when: manual

.base:
  <<: *settings
  before_script:
    - echo "job $CI_JOB_NAME"
  variables:
    BASE: "1"

.rust:
  extends: .base
  variables:
    RUST: "stable"
  rules: !reference [.shared, rules]
"#,
    );
    for k in 0..MATRIX_JOBS {
        let _ = write!(
            y,
            r#"
matrix-{k}:
  extends: .rust
  stage: s0
  parallel:
    matrix:
      - OS: [linux, macos]
        ARCH: [amd64, arm64]
  script:
    - !reference [.shared, script]
    - echo "$OS $ARCH"
"#
        );
    }
    for i in 0..PLAIN_JOBS {
        let stage = i % STAGES;
        let _ = write!(
            y,
            "\njob-{i}:\n  extends: .rust\n  stage: s{stage}\n  variables:\n    N: \"{i}\"\n  script:\n    - !reference [.shared, script]\n    - echo {i}\n"
        );
        if stage == 0 {
            // Starts at once, after one instance of a matrix job, chosen by selector.
            let _ = write!(
                y,
                "  needs:\n    - job: matrix-{}\n      parallel:\n        matrix:\n          - OS: linux\n            ARCH: amd64\n",
                i % MATRIX_JOBS
            );
        } else {
            let _ = writeln!(y, "  needs: [job-{}]", i - 1);
        }
    }
    y
}

fn git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .map_err(|e| format!("git {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A repository on `main` with the generated pipeline and a few sources committed.
fn repo(dir: &Path) -> Result<(), String> {
    git(dir, &["init", "-q", "-b", "main"])?;
    git(dir, &["config", "commit.gpgsign", "false"])?;
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/acme/bench.git",
        ],
    )?;
    std::fs::create_dir_all(dir.join("src")).map_err(|e| format!("mkdir src: {e}"))?;
    for (rel, text) in [
        (".gitlab-ci.yml", generate()),
        ("Cargo.toml", "[package]\nname = \"bench\"\n".to_string()),
        ("src/main.rs", "fn main() {}\n".to_string()),
    ] {
        std::fs::write(dir.join(rel), text).map_err(|e| format!("write {rel}: {e}"))?;
    }
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "bench pipeline"])
}

fn median(mut xs: Vec<Duration>) -> (Duration, Duration, Duration) {
    xs.sort();
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The phases of `pipeline::plan`, timed one by one with the same calls it makes.
fn phases(opts: &PipelineOptions) -> Result<[Duration; 5], String> {
    let t = Instant::now();
    let repo = Repo::discover(&opts.project_dir).map_err(|e| e.to_string())?;
    let facts = repo.facts().map_err(|e| e.to_string())?;
    let git_facts = t.elapsed();
    let ctx = PipelineContext::new(opts.server_url.clone());
    let t = Instant::now();
    let resolved = config::load(&LoadOptions {
        variables: predefined::rules_variables(&facts, &opts.event, &ctx),
        ..LoadOptions::new(&facts.top_level)
    })
    .map_err(|e| e.to_string())?;
    let load = t.elapsed();
    let t = Instant::now();
    let config = planner::validate(&resolved.tree).map_err(|e| format!("{e:?}"))?;
    let validate = t.elapsed();
    let t = Instant::now();
    let changed_files =
        planner::changed_files(&repo, &facts, &opts.event).map_err(|e| e.to_string())?;
    let files = repo.files().map_err(|e| e.to_string())?;
    let git_changes = t.elapsed();
    let plan_ctx = PlanContext {
        event: opts.event.clone(),
        predefined: predefined::rules_variables(&facts, &opts.event, &ctx),
        late_variables: predefined::user_variables(&facts, &ctx),
        changed_files,
        files,
        ..PlanContext::default()
    };
    let t = Instant::now();
    planner::plan(&config, &plan_ctx).map_err(|e| e.to_string())?;
    Ok([git_facts, load, validate, git_changes, t.elapsed()])
}

/// User + system CPU time of this process and its waited-for children (the git commands),
/// from `/proc/self/stat` (Linux; `None` elsewhere). Clock ticks are taken as 100 Hz, the
/// value on every mainstream Linux build.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime is field 14 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(Duration::from_millis(ticks * 10))
}

fn run() -> Result<(), String> {
    let iters: usize = std::env::var("GLCI_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .max(1);
    let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    repo(tmp.path())?;
    let mut opts = PipelineOptions::new(tmp.path());
    opts.event = Event {
        source: PipelineSource::Push,
        branch: Some("main".into()),
        ..Event::default()
    };

    // Warm-up, and a check that the bench measures what it says.
    let planned = pipeline::plan(&opts).map_err(|e| e.to_string())?;
    let yaml_lines = generate().lines().count();
    if planned.plan.jobs.len() != PLANNED_JOBS {
        return Err(format!(
            "expected {PLANNED_JOBS} planned jobs, got {}",
            planned.plan.jobs.len()
        ));
    }

    let mut total = Vec::with_capacity(iters);
    let cpu_before = cpu_time();
    for _ in 0..iters {
        let t = Instant::now();
        let planned = pipeline::plan(&opts).map_err(|e| e.to_string())?;
        total.push(t.elapsed());
        std::hint::black_box(planned);
    }
    let (med, min, max) = median(total);
    println!(
        "pipeline::plan, {PLANNED_JOBS} jobs ({yaml_lines} YAML lines), {iters} runs: median {:.2} ms, min {:.2} ms, max {:.2} ms (goal <= 50 ms: {})",
        ms(med),
        ms(min),
        ms(max),
        if med <= Duration::from_millis(50) { "met" } else { "MISSED" }
    );

    // On a shared machine wall-clock time includes waiting for a core; CPU time does not.
    if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
        println!(
            "  CPU time (this process + git children) per plan: {:.2} ms",
            ms((after - before) / iters as u32)
        );
    }

    let names = [
        "git facts",
        "config::load",
        "plan::validate",
        "git changes+files",
        "plan::plan",
    ];
    let mut per_phase: Vec<Vec<Duration>> = vec![Vec::with_capacity(iters); names.len()];
    for _ in 0..iters {
        for (slot, d) in per_phase.iter_mut().zip(phases(&opts)?) {
            slot.push(d);
        }
    }
    for (name, ds) in names.iter().zip(per_phase) {
        println!("  {name:<18} median {:.2} ms", ms(median(ds).0));
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo test --benches` runs bench targets with `--bench` absent; skip the slow work then.
    if !std::env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench plan: {e}");
            ExitCode::FAILURE
        }
    }
}
