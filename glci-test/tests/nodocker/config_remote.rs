//! `include:remote` against a tiny HTTP server on 127.0.0.1 started by the test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use base64::Engine;
use glci_test::config::{load, to_yaml, LoadOptions, SourceLocation};
use sha2::{Digest, Sha256};

const REMOTE: &str = "remote-job:\n  script: [echo remote]\n";

/// Serves `/ci.yml` (200) and anything else (404) until the test process ends.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Drain the headers so the client sees a clean exchange.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let (status, body, extra) = match path {
                "/ci.yml" => ("200 OK", REMOTE, ""),
                "/redirect.yml" => ("302 Found", "", "Location: /ci.yml\r\n"),
                _ => ("404 Not Found", "", ""),
            };
            let mut out = &stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// Loads `text` as `.gitlab-ci.yml`; the test server is on loopback, so private addresses
/// are allowed (as `--allow-private-includes` does).
fn load_main(text: &str) -> Result<glci_test::config::Resolved, String> {
    load_with(text, true)
}

fn load_with(text: &str, allow_private: bool) -> Result<glci_test::config::Resolved, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join(".gitlab-ci.yml"), text).map_err(|e| e.to_string())?;
    load(&LoadOptions {
        project_dir: dir.path().to_path_buf(),
        allow_private_remote: allow_private,
        ..LoadOptions::default()
    })
    .map_err(|e| e.to_string())
}

#[test]
fn fetched_remotes_are_cached_for_offline_runs() {
    let base = serve();
    let project = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        project.path().join(".gitlab-ci.yml"),
        format!("include: {base}/ci.yml\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let opts = |offline: bool| LoadOptions {
        project_dir: project.path().to_path_buf(),
        allow_private_remote: true,
        include_cache: Some(cache.path().to_path_buf()),
        offline,
        ..LoadOptions::default()
    };
    let err = load(&opts(true))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("is not in glci's include cache and `--offline` is set"),
        "{err}"
    );
    let online = load(&opts(false)).unwrap_or_else(|e| panic!("{e}"));
    let hits = HITS.load(std::sync::atomic::Ordering::SeqCst);
    let offline = load(&opts(true)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(to_yaml(&offline.tree), to_yaml(&online.tree));
    assert_eq!(
        HITS.load(std::sync::atomic::Ordering::SeqCst),
        hits,
        "offline fetched"
    );
}

/// Requests the test server saw, to show a refused include is never fetched.
static HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn loopback_and_link_local_remotes_are_refused_unless_allowed() {
    let base = serve();
    let before = HITS.load(std::sync::atomic::Ordering::SeqCst);
    for url in [
        format!("{base}/ci.yml"),
        "http://localhost:9/ci.yml".to_string(),
        "http://169.254.169.254/latest/ci.yml".to_string(),
        "http://[::1]:9/ci.yml".to_string(),
    ] {
        let err = load_with(
            &format!(
                "include: {url}
"
            ),
            false,
        )
        .err()
        .unwrap_or_default();
        assert!(
            err.starts_with(&format!(
                ".gitlab-ci.yml:1:10: Remote file `{url}` is not fetched: "
            )) && err.ends_with("pass `--allow-private-includes` to allow it"),
            "{err}"
        );
    }
    assert_eq!(HITS.load(std::sync::atomic::Ordering::SeqCst), before);
    // A redirect from an allowed fetch to loopback is followed only when allowed too.
    let redirected = load_main(&format!(
        "include: {base}/redirect.yml
"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(redirected.tree.get("remote-job").is_some());
}

#[test]
fn remote_include_string_and_hash_forms() {
    let base = serve();
    let digest =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(REMOTE.as_bytes()));
    let resolved = load_main(&format!(
        "include:\n  - {base}/ci.yml\n  - remote: {base}/ci.yml\n    integrity: sha256-{digest}\nlocal-job: {{script: x}}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        to_yaml(&resolved.tree),
        "remote-job:\n  script:\n  - echo remote\nlocal-job:\n  script: x\n"
    );
    assert_eq!(
        resolved.files[1].location,
        SourceLocation::Url(format!("{base}/ci.yml"))
    );
    // Spans of remote nodes name the URL.
    let span = resolved.tree.get("remote-job").map(|n| n.span.to_string());
    assert_eq!(span, Some(format!("{base}/ci.yml:2:3")));
}

#[test]
fn remote_errors() {
    let base = serve();
    let err = load_main(&format!("include: {base}/missing.yml\n")).err();
    assert_eq!(
        err,
        Some(format!(
            ".gitlab-ci.yml:1:10: Remote file `{base}/missing.yml` could not be fetched because of HTTP code `404` error!"
        ))
    );
    let err = load_main(&format!(
        "include:\n  remote: {base}/ci.yml\n  integrity: sha256-AAAA\n"
    ))
    .err()
    .unwrap_or_default();
    assert!(err.contains("failed integrity check"), "{err}");
    let err = load_main(&format!("include: {base}/ci.txt\n")).err();
    assert_eq!(
        err,
        Some(format!(
            ".gitlab-ci.yml:1:10: Included file `{base}/ci.txt` does not have YAML extension!"
        ))
    );
}
