//! The build id of this library (`GLCI_BUILD_ID`): a hash of its sources, so that every
//! program built from the same glci-test — `cargo glci` and any number of test binaries of a
//! user's crate — agrees on it, and a changed glci-test (an upgrade, an edit) does not. The
//! glci daemon (`src/daemon/`) serves only clients of its own build id.

use std::path::Path;

/// FNV-1a, 64 bits: stable across compilers, unlike `std`'s hasher.
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn hash_dir(dir: &Path, root: &Path, hash: &mut Fnv) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            hash_dir(&path, root, hash);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            hash.write(relative.to_string_lossy().as_bytes());
            hash.write(&(bytes.len() as u64).to_le_bytes());
            hash.write(&bytes);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    hash_dir(&root.join("src"), root, &mut hash);
    println!("cargo:rustc-env=GLCI_BUILD_ID={:016x}", hash.0);
    println!("cargo:rerun-if-changed=src");
}
