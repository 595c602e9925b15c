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
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/ci.yml" {
                ("200 OK", REMOTE)
            } else {
                ("404 Not Found", "")
            };
            let mut out = &stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn load_main(text: &str) -> Result<glci_test::config::Resolved, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join(".gitlab-ci.yml"), text).map_err(|e| e.to_string())?;
    load(&LoadOptions {
        project_dir: dir.path().to_path_buf(),
        ..LoadOptions::default()
    })
    .map_err(|e| e.to_string())
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
