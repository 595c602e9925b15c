//! A watchdog that removes one owner's Docker objects and staging directory when the owner's
//! process dies without cleaning up (SIGKILL, a crash, the OOM killer), with no further glci
//! command: what testcontainers' reaper (Ryuk) does for a test session.
//!
//! Ryuk learns of its owner's death from a dropped connection. Here the watchdog is a child
//! process — this same program started again, in a process group of its own so a terminal's
//! Ctrl-C or hang-up does not reach it — holding the read end of a pipe whose write end only
//! the owner has (it is close-on-exec, so no other child inherits it). The kernel closes that
//! end however the owner ends, so the watchdog wakes on end-of-file, with no polling and no
//! risk of mistaking a reused pid for the owner:
//!
//! - after a clean end, the owner has written [`DONE`] first (its own cleanup ran, and kept
//!   containers must stay): the watchdog exits at once;
//! - otherwise it removes the containers, networks and volumes labelled with the owner's id
//!   (never anything else: not even other dead owners' objects, which are `clean`'s business)
//!   and the staging directory, then exits.
//!
//! A program that can serve as its own watchdog calls [`serve_if_asked`] first thing in
//! `main` (`cargo glci` and the `glci_test::main!()` harness do). Other programs using the
//! library start `cargo-glci` from `PATH` as the watchdog, or none if there is none: the next
//! run's orphan sweep and `cargo glci clean` still remove what is left.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{remove_owned, Engine, Owner};

/// The environment variable that turns a glci program into a watchdog for this owner id.
const ENV_OWNER: &str = "GLCI_REAPER_OWNER";
/// The staging directory the watchdog removes too (absent: none).
const ENV_STAGING: &str = "GLCI_REAPER_STAGING";
/// What the owner writes before closing the pipe when it has cleaned up itself.
const DONE: &[u8] = b"done\n";

/// How long after the owner's end the watchdog keeps sweeping until a sweep finds nothing.
const SETTLE: Duration = Duration::from_secs(3);
/// When it stops sweeping regardless (an engine that keeps failing).
const GIVE_UP: Duration = Duration::from_secs(8);

/// Set by [`serve_if_asked`]: this program can be started as a watchdog.
static CAN_SERVE: AtomicBool = AtomicBool::new(false);

/// Runs the watchdog and exits when this process was started as one; returns at once
/// otherwise. Call it first in `main`, before threads or output.
pub fn serve_if_asked() {
    let Some(owner) = std::env::var_os(ENV_OWNER) else {
        CAN_SERVE.store(true, Ordering::SeqCst);
        return;
    };
    let staging = std::env::var_os(ENV_STAGING).map(PathBuf::from);
    watch(&owner.to_string_lossy(), staging.as_deref());
    std::process::exit(0);
}

/// Waits for the owner's end on stdin, and cleans up after it unless it said [`DONE`].
fn watch(owner_id: &str, staging: Option<&Path>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        // The owner's terminal closing or its Ctrl-C must not end the watchdog first: it is
        // in its own process group already; these handlers also keep a stray SIGHUP or
        // SIGINT sent to it by pid from killing it before it has done its work.
        use tokio::signal::unix::{signal, SignalKind};
        let _hangup = signal(SignalKind::hangup());
        let _interrupt = signal(SignalKind::interrupt());
        let said = tokio::task::spawn_blocking(|| {
            let mut said = Vec::new();
            let _ = std::io::stdin().take(64).read_to_end(&mut said);
            said
        })
        .await
        .unwrap_or_default();
        if said == DONE {
            return;
        }
        // Requests the owner sent just before it died (create a container, a network) may
        // still be under way in the engine and make objects after a first sweep: sweep until
        // the engine has had time to finish them and a sweep finds nothing.
        let started = Instant::now();
        loop {
            let quiet = match Engine::connect().await {
                Ok(engine) => remove_owned(&engine, owner_id)
                    .await
                    .is_ok_and(|removed| removed.is_empty()),
                Err(_) => false,
            };
            if (quiet && started.elapsed() >= SETTLE) || started.elapsed() >= GIVE_UP {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(staging) = staging {
            let _ = std::fs::remove_dir_all(staging);
        }
    });
}

/// The owner's side: the watchdog process and the pipe to it. Dropping it without
/// [`Reaper::release`] lets the watchdog clean up, as the owner's death would.
#[derive(Debug)]
pub struct Reaper {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Reaper {
    /// Starts the watchdog for `owner` (its Docker objects) and `staging` (a directory to
    /// remove). `None` when no program can serve as one (see the module's documentation).
    pub fn spawn(owner: &Owner, staging: Option<&Path>) -> Option<Reaper> {
        let program = if CAN_SERVE.load(Ordering::SeqCst) {
            std::env::current_exe().ok()?
        } else {
            find_in_path("cargo-glci")?
        };
        let mut command = Command::new(program);
        command
            .env(ENV_OWNER, &owner.id)
            .env_remove(ENV_STAGING)
            .stdin(Stdio::piped())
            // Never the owner's stdout/stderr: a test runner reading them would wait for the
            // watchdog to end.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(staging) = staging {
            command.env(ENV_STAGING, staging);
        }
        let mut child = command.spawn().ok()?;
        let pipe = child.stdin.take();
        Some(Reaper { child, pipe })
    }

    /// The watchdog's process id (tests look for it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The owner cleaned up itself: the watchdog ends without touching anything. Waits for
    /// it to exit (it does at once), so no zombie is left behind in a long-lived process.
    pub fn release(mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(DONE);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Closing the pipe without `done`: the watchdog removes the owner's objects.
        self.pipe.take();
    }
}

/// The first executable file named `name` in `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
