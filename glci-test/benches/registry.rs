//! glci's registry side by side with Debian's `docker-registry` (distribution's registry:2,
//! 2.8.2), both on loopback, driven by the `docker` CLI through the engine on this host:
//! `docker push` and `docker pull` of a fresh 100 MiB single-layer image and of a fresh
//! 20-layer image (5 MiB a layer), alternating which registry goes first; then a 1 GiB blob
//! uploaded with `curl` and fetched back, with the peak RSS of each server while it serves
//! the blob, above its RSS before (glci's server runs in this process; its high-water mark is
//! reset through `/proc/self/clear_refs` first). Goals: pull ≤ 1.1× and push ≤ 1.05× the
//! reference's wall time; glci's peak while serving the 1 GiB blob < 64 MiB above idle.
//!
//! Run: `scripts/bench-registry [ROUNDS]` (or `GLCI_BENCH_ROUNDS=N cargo bench -p glci-test
//! --bench registry`). Needs `docker-registry` (apt) and `glci-fixture/busybox:latest`.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use glci_test::server::{Server, ServerConfig};

const MIB: usize = 1024 * 1024;
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
    memory_of("self", field)
}

/// `VmHWM` / `VmRSS` of process `pid` (`self` for this one), KiB.
fn memory_of(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
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

/// A fresh image (random data, so no registry has its layers yet) of `layers` layers of
/// `layer_bytes` each, tagged `tag`.
fn build_image(
    dir: &Path,
    tag: &str,
    round: usize,
    layers: usize,
    layer_bytes: usize,
) -> Result<(), String> {
    let ctx = dir.join(format!("ctx-{round}"));
    std::fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
    let mut dockerfile = format!("FROM {BASE}\n");
    for layer in 0..layers {
        random_file(&ctx.join(format!("blob{layer}")), layer_bytes)?;
        dockerfile.push_str(&format!("COPY blob{layer} /blob{layer}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
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

/// `bytes` of random data at `path`, written a MiB at a time (this process's peak RSS is
/// the server's, not the data's); returns its sha256 digest.
fn random_file(path: &Path, bytes: usize) -> Result<String, String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut hasher = sha2::Sha256::new();
    let mut chunk = vec![0u8; 1024 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        rand::Rng::fill(&mut rand::rng(), &mut chunk[..n]);
        hasher.update(&chunk[..n]);
        file.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
        left -= n;
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
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
    let (reference, ref_addr) = start_reference(&ref_dir)?;
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
    let registries = [
        ("glci", creds.address.clone()),
        ("reference", ref_addr.clone()),
    ];
    for (label, layers, layer_bytes) in [
        ("100 MiB single-layer image", 1, 100 * MIB),
        ("20-layer image (5 MiB a layer)", 20, 5 * MIB),
    ] {
        push_pull(
            tmp.path(),
            &cfg,
            &registries,
            rounds,
            label,
            layers,
            layer_bytes,
        )?;
    }
    let peak_kib = memory("VmHWM:");
    println!(
        "glci process RSS during push/pull: idle {} MiB, peak {} MiB (+{} MiB)",
        idle_kib / 1024,
        peak_kib / 1024,
        peak_kib.saturating_sub(idle_kib) / 1024
    );
    big_blob(
        tmp.path(),
        &format!("{}:{}", creds.username, creds.password),
        &registries,
        reference.0.id(),
    )?;
    rt.block_on(server.shutdown());
    Ok(())
}

/// `rounds` of `docker push` and `docker pull` of a fresh image on both registries,
/// alternating which goes first; prints medians and ratios.
fn push_pull(
    dir: &Path,
    cfg: &Path,
    registries: &[(&str, String); 2],
    rounds: usize,
    label: &str,
    layers: usize,
    layer_bytes: usize,
) -> Result<(), String> {
    let mut push = [Vec::new(), Vec::new()];
    let mut pull = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let local = format!("glci-bench/registry:{layers}-{round}");
        build_image(dir, &local, round, layers, layer_bytes)?;
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let remote = |i: usize| format!("{}/bench/image{layers}:{round}", registries[i].1);
        for &i in &order {
            docker(cfg, &["tag", &local, &remote(i)])?;
            push[i].push(timed(cfg, &["push", &remote(i)])?);
        }
        // Pulls start from nothing: every tag of the image goes first, so its layers do.
        for i in 0..2 {
            let _ = docker(cfg, &["rmi", &remote(i)]);
        }
        let _ = docker(cfg, &["rmi", &local]);
        for &i in &order {
            pull[i].push(timed(cfg, &["pull", &remote(i)])?);
            docker(cfg, &["rmi", &remote(i)])?;
        }
        eprintln!(
            "{label}, round {round}: push glci {:.2}s ref {:.2}s, pull glci {:.2}s ref {:.2}s",
            push[0][round].as_secs_f64(),
            push[1][round].as_secs_f64(),
            pull[0][round].as_secs_f64(),
            pull[1][round].as_secs_f64()
        );
    }
    let (gp, rp) = (median(&mut push[0]), median(&mut push[1]));
    let (gl, rl) = (median(&mut pull[0]), median(&mut pull[1]));
    println!("{label}, {rounds} rounds, medians:");
    println!(
        "  push: glci {:.2}s  reference {:.2}s  ratio {:.2} (goal <= 1.05)",
        gp.as_secs_f64(),
        rp.as_secs_f64(),
        gp.as_secs_f64() / rp.as_secs_f64()
    );
    println!(
        "  pull: glci {:.2}s  reference {:.2}s  ratio {:.2} (goal <= 1.10)",
        gl.as_secs_f64(),
        rl.as_secs_f64(),
        gl.as_secs_f64() / rl.as_secs_f64()
    );
    Ok(())
}

const BIG_BLOB_BYTES: usize = 1024 * MIB;

fn curl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "-f"])
        .args(args)
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Uploads a 1 GiB blob to both registries (POST, then one streamed PUT), then GETs it from
/// each, in turn, measuring each server's peak RSS above its RSS just before the GET.
fn big_blob(
    dir: &Path,
    glci_user: &str,
    registries: &[(&str, String); 2],
    reference_pid: u32,
) -> Result<(), String> {
    let file = dir.join("big-blob");
    let digest = random_file(&file, BIG_BLOB_BYTES)?;
    let file = file.to_string_lossy().into_owned();
    let reference_pid = reference_pid.to_string();
    let mut lines = Vec::new();
    for (i, (name, addr)) in registries.iter().enumerate() {
        let auth: Vec<&str> = if i == 0 {
            vec!["-u", glci_user]
        } else {
            vec![]
        };
        let with_auth = |rest: &[&str]| {
            let mut all = auth.clone();
            all.extend_from_slice(rest);
            curl(&all)
        };
        let headers = with_auth(&[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            &format!("http://{addr}/v2/bench/big/blobs/uploads/"),
        ])?;
        let location = headers
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                    .map(|(_, v)| v.trim().to_string())
            })
            .ok_or("no Location for the upload")?;
        let location = if location.starts_with('/') {
            format!("http://{addr}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let upload_start = Instant::now();
        with_auth(&["-o", "/dev/null", "-X", "PUT", "-T", &file, &put])?;
        let upload = upload_start.elapsed();
        let pid = if i == 0 {
            "self"
        } else {
            reference_pid.as_str()
        };
        // Reset the high-water mark to the current RSS, then serve the blob.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").map_err(|e| e.to_string())?;
        let before = memory_of(pid, "VmRSS:");
        let get_start = Instant::now();
        with_auth(&[
            "-o",
            "/dev/null",
            &format!("http://{addr}/v2/bench/big/blobs/{digest}"),
        ])?;
        let get = get_start.elapsed();
        let peak = memory_of(pid, "VmHWM:");
        lines.push(format!(
            "  {name:9}: upload {:.2}s, GET {:.2}s, RSS before {} MiB, peak while serving +{} MiB",
            upload.as_secs_f64(),
            get.as_secs_f64(),
            before / 1024,
            peak.saturating_sub(before) / 1024
        ));
    }
    println!("1 GiB blob (curl), goal: glci's peak while serving < 64 MiB above idle:");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
