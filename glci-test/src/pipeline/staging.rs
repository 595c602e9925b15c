//! A pipeline's staging directory, `pipelines/<id>/staging/`: the checkouts and the jobs'
//! builds directories, which build containers mount read-write at `/builds`.
//!
//! A job runs as root, so it can leave a setuid-root program there (`chmod 4755`). Docker's
//! API (1.41) cannot mount a bind `nosuid`/`nodev` (`Binds` refuses the mode, `BindOptions`
//! has no such field), so the tree is kept out of other users' reach instead: its root is
//! mode 0700 (only its owner may enter), and it goes on every exit path — with the session,
//! with the session's watchdog after a kill (`docker::Reaper`), and with `cargo glci clean`
//! for a run that died without one. For that last case the directory names the process that
//! made it, in the same terms as the labels of its Docker objects.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::docker::{owner_is_dead, Owner};

/// The pipeline directory's subdirectory for checkouts and builds directories.
const STAGING_DIR: &str = "staging";
/// The file in the staging directory naming its owner (`label=value` lines).
const OWNER_FILE: &str = "owner";

/// The staging directory of the pipeline in `pipeline_dir`.
pub fn staging_dir(pipeline_dir: &Path) -> PathBuf {
    pipeline_dir.join(STAGING_DIR)
}

/// Makes the staging directory of `pipeline_dir` for `owner`: mode 0700, owner file inside.
pub fn create(pipeline_dir: &Path, owner: &Owner) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = staging_dir(pipeline_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    // Whatever the umask made of it, and if it existed already.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let mut lines: Vec<String> = owner
        .labels()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    lines.sort();
    let tmp = tempfile::NamedTempFile::new_in(&dir)?;
    std::fs::write(tmp.path(), lines.concat())?;
    tmp.persist(dir.join(OWNER_FILE)).map_err(|e| e.error)?;
    Ok(dir)
}

/// Removes the staging directory of `pipeline_dir` (gone already is fine).
pub fn remove(pipeline_dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(staging_dir(pipeline_dir)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the staging directory of `pipeline_dir` names a process that is still there:
/// its run goes on (`cargo glci system prune` leaves such a pipeline alone).
pub fn is_live(pipeline_dir: &Path) -> bool {
    let dir = staging_dir(pipeline_dir);
    dir.is_dir() && read_owner(&dir.join(OWNER_FILE)).is_some_and(|l| !owner_is_dead(&l))
}

/// Removes the staging directories of runs in `home` whose process is gone (or that name
/// no owner: made by a glci before this file existed); returns how many.
pub fn remove_dead(home: &Path) -> io::Result<usize> {
    let pipelines = match std::fs::read_dir(home.join("pipelines")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in pipelines.filter_map(Result::ok) {
        let dir = staging_dir(&entry.path());
        if !dir.is_dir() {
            continue;
        }
        let labels = read_owner(&dir.join(OWNER_FILE));
        if labels.as_ref().is_some_and(|l| !owner_is_dead(l)) {
            continue;
        }
        remove(&entry.path())?;
        removed += 1;
    }
    Ok(removed)
}

/// The owner labels written by [`create`]; `None` when the file is missing or unreadable.
fn read_owner(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::LABEL_OWNER_PID;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn staging_is_private_and_only_dead_owners_lose_it() {
        let home = tempfile::tempdir().unwrap();
        let live = home.path().join("pipelines/1");
        let dead = home.path().join("pipelines/2");
        let unowned = home.path().join("pipelines/3");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&unowned).unwrap();

        let me = Owner::for_this_process("1");
        let dir = create(&live, &me).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        // A process that has exited owns pipeline 2.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut gone = Owner::for_this_process("2");
        gone.pid = pid;
        gone.start = None;
        create(&dead, &gone).unwrap();
        let owner_file = std::fs::read_to_string(staging_dir(&dead).join(OWNER_FILE)).unwrap();
        assert!(owner_file.contains(&format!("{LABEL_OWNER_PID}={pid}\n")));
        std::fs::create_dir_all(staging_dir(&unowned).join("checkout")).unwrap();

        assert_eq!(remove_dead(home.path()).unwrap(), 2);
        assert!(staging_dir(&live).is_dir());
        assert!(!staging_dir(&dead).exists());
        assert!(!staging_dir(&unowned).exists());
        assert!(dead.is_dir(), "logs and artifacts stay");
    }
}
