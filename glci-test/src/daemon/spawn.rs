//! Starting the daemon: this same program again with [`DAEMON_ARG`], detached (a process
//! group of its own, so the terminal's or nextest's signals to the test's group do not reach
//! it; its output is its log, never the starter's pipes, so nobody waits for its
//! end-of-file), under the start lock so that of many processes asking at once exactly one
//! starts it. The log is rotated here, at each start, under the same lock.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{log_file, DaemonError, DaemonSettings, Paths, DAEMON_ARG};

/// How long a new daemon gets to answer (it recovers a dead daemon's pipelines first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a daemon unless one answers; returns once one does.
pub fn start(paths: &Paths) -> Result<(), DaemonError> {
    create_private_dir(&paths.dir)?;
    let lock_path = paths.lock();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| DaemonError::io(format!("cannot open {}", lock_path.display()), e))?;
    // Released when `lock` is dropped (also when this process dies).
    lock.lock()
        .map_err(|e| DaemonError::io(format!("cannot lock {}", lock_path.display()), e))?;
    if std::os::unix::net::UnixStream::connect(&paths.socket).is_ok() {
        // Started by another process meanwhile (or one of another build, which the caller
        // handles after its hello): a daemon binds its socket only once it serves.
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| DaemonError::io("cannot find this program to start the daemon", e))?;
    let log = open_log(paths)?;
    let log_err = log
        .try_clone()
        .map_err(|e| DaemonError::io("the daemon's log", e))?;
    let mut command = Command::new(&exe);
    command
        .arg(DAEMON_ARG)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| DaemonError::io(format!("cannot start {} as the daemon", exe.display()), e))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if std::os::unix::net::UnixStream::connect(&paths.socket).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DaemonError::Start(format!(
                "it ended ({status}); see {}",
                paths.log().display()
            )));
        }
        if Instant::now() > deadline {
            return Err(DaemonError::Start(format!(
                "no answer on {} after {}s; see {}",
                paths.socket.display(),
                START_TIMEOUT.as_secs(),
                paths.log().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Reaped when it ends, so that it does not linger as a zombie of this process.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// The daemon's log, rotated by size ([`DaemonSettings`]) and opened for appending.
fn open_log(paths: &Paths) -> Result<std::fs::File, DaemonError> {
    let settings = DaemonSettings::from_settings()?;
    let log = paths.log();
    log_file::rotate(&log, settings.log_max_bytes, settings.log_keep)
        .map_err(|e| DaemonError::io(format!("cannot rotate {}", log.display()), e))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| DaemonError::io(format!("cannot open {}", log.display()), e))
}

/// `dir` (and its parents), mode 0700: it holds the socket while it is bound.
fn create_private_dir(dir: &std::path::Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let what = |e| DaemonError::io(format!("cannot create {}", dir.display()), e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(what)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(what)
}
