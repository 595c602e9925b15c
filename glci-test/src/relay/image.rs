//! The relay container's image, made on the engine without pulling anything: glci's own
//! binary (which serves as the agent, see `agent.rs`) and the shared libraries `ldd` names,
//! imported from a tar stream (`POST /images/create?fromSrc=-`, `docker import`). Made once per
//! binary and kept on the engine, labelled `io.glci.relay-agent`; images of older builds go
//! when a new one is made.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::docker::Engine;

use super::agent::{this_exe_is_agent, AGENT_ARG};
use super::RelayError;

/// Label of relay images (value: the binary's fingerprint).
pub const LABEL_RELAY_AGENT: &str = "io.glci.relay-agent";
/// Repository of relay images; the tag is the binary's fingerprint.
const REPOSITORY: &str = "glci-relay";
/// Where the binary lives in the image.
pub(crate) const AGENT_PATH: &str = "/glci-relay";

/// The relay image on the engine, and how to run the agent in it.
#[derive(Debug, Clone)]
pub(crate) struct AgentImage {
    pub(crate) tag: String,
    /// `LD_LIBRARY_PATH` for the agent: the directories the libraries were copied to.
    pub(crate) library_path: String,
}

/// The glci binary that serves as the agent, in this order: `GLCI_RELAY_AGENT`; this
/// process's executable when its `main` handles the agent argument (`cargo glci`,
/// `glci_test::main!()`); `cargo-glci` next to this executable, one directory up (cargo's
/// `target/<profile>` for test binaries in `deps/`), or on `PATH`. A candidate found by
/// looking around must answer `<binary> __glci-relay-agent --version` with the protocol this
/// process speaks, so a stale build is never shipped.
pub fn agent_binary() -> Result<PathBuf, RelayError> {
    if let Some(path) = std::env::var_os("GLCI_RELAY_AGENT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok();
    if this_exe_is_agent() {
        if let Some(exe) = exe {
            return Ok(exe);
        }
    }
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = exe.as_deref().and_then(Path::parent) {
        candidates.push(dir.join("cargo-glci"));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("cargo-glci"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("cargo-glci")));
    }
    for candidate in candidates {
        if !candidate.is_file() {
            continue;
        }
        if speaks_our_protocol(&candidate) {
            return Ok(candidate);
        }
        tried.push(format!("{} (an older build)", candidate.display()));
    }
    Err(RelayError::NoAgent {
        tried: if tried.is_empty() {
            "no cargo-glci next to this program or on PATH".to_string()
        } else {
            tried.join(", ")
        },
    })
}

fn speaks_our_protocol(binary: &Path) -> bool {
    std::process::Command::new(binary)
        .args([AGENT_ARG, "--version"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == super::frame::HELLO)
}

/// The relay image for `binary`, imported when the engine does not have it yet.
pub(crate) async fn ensure_image(engine: &Engine, binary: &Path) -> Result<AgentImage, RelayError> {
    if std::env::consts::OS != "linux" {
        return Err(RelayError::Unsupported(format!(
            "the relay agent is glci's own binary, which must be a Linux one (this is {})",
            std::env::consts::OS
        )));
    }
    let version = engine
        .client()
        .version()
        .await
        .map_err(|e| RelayError::docker("ask the engine for its version", e))?;
    let engine_arch = version.arch.unwrap_or_default();
    let ours = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    if !engine_arch.is_empty() && engine_arch != ours {
        return Err(RelayError::Unsupported(format!(
            "the engine runs {engine_arch} binaries and glci is a {ours} one"
        )));
    }
    let binary = binary.to_path_buf();
    let libraries = {
        let binary = binary.clone();
        tokio::task::spawn_blocking(move || shared_libraries(&binary))
            .await
            .map_err(|e| RelayError::Image(format!("listing shared libraries: {e}")))??
    };
    let fingerprint = fingerprint(&binary, &libraries)?;
    let tag = format!("{REPOSITORY}:{fingerprint}");
    let library_path = {
        let mut dirs: Vec<String> = libraries
            .iter()
            .filter_map(|l| Path::new(l).parent().map(|p| p.display().to_string()))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs.join(":")
    };
    let image = AgentImage { tag, library_path };
    if engine.client().inspect_image(&image.tag).await.is_ok() {
        return Ok(image);
    }
    let tar = {
        let binary = binary.clone();
        tokio::task::spawn_blocking(move || image_tar(&binary, &libraries))
            .await
            .map_err(|e| RelayError::Image(format!("packing the agent: {e}")))??
    };
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(REPOSITORY)
        .tag(&fingerprint)
        .changes(vec![format!("LABEL {LABEL_RELAY_AGENT}={fingerprint}")])
        .build();
    let file = tokio::fs::File::open(tar.path())
        .await
        .map_err(|e| RelayError::Image(format!("reading the packed agent: {e}")))?;
    let body = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut progress =
        engine
            .client()
            .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    while let Some(step) = progress.next().await {
        let step =
            step.map_err(|e| RelayError::docker(format!("import image {}", image.tag), e))?;
        if let Some(error) = step.error_detail.and_then(|d| d.message) {
            return Err(RelayError::Image(format!(
                "import image {}: {error}",
                image.tag
            )));
        }
    }
    remove_older_images(engine, &image.tag).await;
    Ok(image)
}

/// Removes relay images of other builds (each debug build makes one, ~35 MB), except those a
/// container still uses: without `force` the engine refuses to remove an image in use, so a
/// relay of another glci run keeps its image.
async fn remove_older_images(engine: &Engine, keep: &str) {
    let filters = std::collections::HashMap::from([("label", vec![LABEL_RELAY_AGENT])]);
    let options = bollard::query_parameters::ListImagesOptionsBuilder::new()
        .filters(&filters)
        .build();
    let Ok(images) = engine.client().list_images(Some(options)).await else {
        return;
    };
    for image in images {
        if image.repo_tags.iter().any(|t| t == keep) {
            continue;
        }
        let _ = engine
            .client()
            .remove_image(
                &image.id,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
}

/// Names the image after what is in it, without reading 200 MB of debug build each run: the
/// binary's and libraries' paths, sizes, modification times and inodes, and this host.
fn fingerprint(binary: &Path, libraries: &[String]) -> Result<String, RelayError> {
    let mut hash = Sha256::new();
    hash.update(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default());
    for path in std::iter::once(binary.display().to_string()).chain(libraries.iter().cloned()) {
        let meta = std::fs::metadata(&path)
            .map_err(|e| RelayError::Image(format!("reading {path}: {e}")))?;
        hash.update(format!(
            "{path}\0{}\0{}\0{}\0{}\n",
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        ));
    }
    Ok(hex::encode(&hash.finalize()[..8]))
}

/// The absolute paths of the shared libraries (and the loader) `ldd` names for `binary`;
/// empty for a static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<String>, RelayError> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| {
            RelayError::Image(format!(
                "running ldd (needed to ship glci's binary to a remote engine): {e}"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(RelayError::Image(format!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse_ldd(&text))
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and `/lib64/ld-linux-x86-64.so.2
/// (0x…)` give a path; `linux-vdso.so.1 (0x…)` (in the kernel) and `not found` do not.
fn parse_ldd(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let target = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = target.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') && !paths.iter().any(|p| p == path) {
            paths.push(path.to_string());
        }
    }
    paths
}

/// The image's root filesystem in a temporary file: the binary at [`AGENT_PATH`] (without
/// its debug information when `strip` is there: a debug build is ~200 MB, ~30 MB without)
/// and each library at its own path.
fn image_tar(binary: &Path, libraries: &[String]) -> Result<tempfile::NamedTempFile, RelayError> {
    let io = |what: &str, e: std::io::Error| RelayError::Image(format!("{what}: {e}"));
    let stripped = tempfile::NamedTempFile::new().map_err(|e| io("temporary file", e))?;
    let stripped_ok = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(stripped.path())
        .arg(binary)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let agent = if stripped_ok { stripped.path() } else { binary };
    let out = tempfile::NamedTempFile::new().map_err(|e| io("temporary file", e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(
        out.reopen().map_err(|e| io("temporary file", e))?,
    ));
    let mut add = |source: &Path, name: &str| -> Result<(), RelayError> {
        let mut file = std::fs::File::open(source)
            .map_err(|e| io(&format!("reading {}", source.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| io(&format!("reading {}", source.display()), e))?
            .len();
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name.trim_start_matches('/'), &mut file)
            .map_err(|e| io("packing the agent", e))
    };
    add(agent, AGENT_PATH)?;
    for library in libraries {
        add(Path::new(library), library)?;
    }
    let mut writer = tar.into_inner().map_err(|e| io("packing the agent", e))?;
    writer.flush().map_err(|e| io("packing the agent", e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f26)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f26)\n\
                    \tlibfoo.so => not found\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f26)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }
}
