//! glci's registry side by side with Debian's `docker-registry` (distribution's registry:2,
//! 2.8.2), both on loopback, driven by the `docker` CLI through the engine on this host:
//! `docker push` and `docker pull` of a fresh 100 MiB single-layer image, alternating which
//! registry goes first. Goals: pull ≤ 1.1× and push ≤ 1.05× the reference's wall time; the
//! peak RSS of this process (glci's server runs in it) stays low because blobs are streamed.
//!
//! Run: `scripts/bench-registry [ROUNDS]` (or `GLCI_BENCH_ROUNDS=N cargo bench -p glci-test
//! --bench registry`). Needs `docker-registry` (apt) and `glci-fixture/busybox:latest`.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use glci_test::server::{Server, ServerConfig};

const LAYER_BYTES: usize = 100 * 1024 * 1024;
const BASE: &str = "glci-fixture/busybox:latest";

fn docker(config: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("docker")
        .env("DOCKER_CONFIG", config)
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn timed(config: &Path, args: &[&str]) -> Result<Duration, String> {
    let start = Instant::now();
    docker(config, args)?;
    Ok(start.elapsed())
}

/// `VmHWM` / `VmRSS` of this process, KiB.
fn memory(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(5000)
}

struct Reference(Child);
impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_reference(dir: &Path) -> Result<(Reference, String), String> {
    let port = free_port();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new("docker-registry")
        .args(["serve"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("docker-registry (apt-get install docker-registry): {e}"))?;
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Ok((Reference(child), addr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("docker-registry did not start listening".to_string())
}

/// A fresh image (random data, so no registry has its layer yet), tagged `tag`.
fn build_image(dir: &Path, tag: &str, round: usize) -> Result<(), String> {
    let ctx = dir.join(format!("ctx-{round}"));
    std::fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
    // Written a MiB at a time: this process's peak RSS is the server's, not the data's.
    let mut file = std::fs::File::create(ctx.join("blob")).map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; 1024 * 1024];
    for _ in 0..LAYER_BYTES / chunk.len() {
        rand::Rng::fill(&mut rand::rng(), &mut chunk[..]);
        file.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {BASE}\nCOPY blob /blob\n"),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args([
            "build",
            "-q",
            "--label",
            "io.glci.bench=registry",
            "-t",
            tag,
        ])
        .arg(&ctx)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&ctx);
    if !out.status.success() {
        return Err(format!(
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rounds: usize = std::env::var("GLCI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    match run(rounds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-registry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(rounds: usize) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let mut config = ServerConfig::new(tmp.path().join("glci"));
    config.registry.dir = Some(tmp.path().join("glci-registry"));
    let server = rt
        .block_on(Server::start(config))
        .map_err(|e| e.to_string())?;
    let creds = server.registry_credentials();
    let ref_dir = tmp.path().join("reference");
    std::fs::create_dir_all(&ref_dir).map_err(|e| e.to_string())?;
    let (_reference, ref_addr) = start_reference(&ref_dir)?;
    let cfg = tmp.path().join("docker-config");
    std::fs::create_dir_all(&cfg).map_err(|e| e.to_string())?;
    docker(
        &cfg,
        &[
            "login",
            &creds.address,
            "-u",
            &creds.username,
            "-p",
            &creds.password,
        ],
    )?;
    let idle_kib = memory("VmRSS:");

    let registries = [("glci", creds.address.clone()), ("reference", ref_addr)];
    let mut push = [Vec::new(), Vec::new()];
    let mut pull = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let local = format!("glci-bench/registry:{round}");
        build_image(tmp.path(), &local, round)?;
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let remote = |i: usize| format!("{}/bench/image:{round}", registries[i].1);
        for &i in &order {
            docker(&cfg, &["tag", &local, &remote(i)])?;
            push[i].push(timed(&cfg, &["push", &remote(i)])?);
        }
        // Pulls start from nothing: every tag of the image goes first, so its layers do.
        let untag_all = || -> Result<(), String> {
            for i in 0..2 {
                let _ = docker(&cfg, &["rmi", &remote(i)]);
            }
            let _ = docker(&cfg, &["rmi", &local]);
            Ok(())
        };
        untag_all()?;
        for &i in &order {
            pull[i].push(timed(&cfg, &["pull", &remote(i)])?);
            docker(&cfg, &["rmi", &remote(i)])?;
        }
        eprintln!(
            "round {round}: push glci {:.2}s ref {:.2}s, pull glci {:.2}s ref {:.2}s",
            push[0][round].as_secs_f64(),
            push[1][round].as_secs_f64(),
            pull[0][round].as_secs_f64(),
            pull[1][round].as_secs_f64()
        );
    }
    let (gp, rp) = (median(&mut push[0]), median(&mut push[1]));
    let (gl, rl) = (median(&mut pull[0]), median(&mut pull[1]));
    println!("100 MiB single-layer image, {rounds} rounds, medians:");
    println!(
        "push: glci {:.2}s  reference {:.2}s  ratio {:.2} (goal <= 1.05)",
        gp.as_secs_f64(),
        rp.as_secs_f64(),
        gp.as_secs_f64() / rp.as_secs_f64()
    );
    println!(
        "pull: glci {:.2}s  reference {:.2}s  ratio {:.2} (goal <= 1.10)",
        gl.as_secs_f64(),
        rl.as_secs_f64(),
        gl.as_secs_f64() / rl.as_secs_f64()
    );
    let peak_kib = memory("VmHWM:");
    println!(
        "glci process RSS: idle {} MiB, peak {} MiB (+{} MiB)",
        idle_kib / 1024,
        peak_kib / 1024,
        peak_kib.saturating_sub(idle_kib) / 1024
    );
    rt.block_on(server.shutdown());
    Ok(())
}
