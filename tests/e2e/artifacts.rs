//! `cargo glci artifacts list|inspect|extract` over what a real run left in `GLCI_HOME`, and
//! the dotenv of that run in `cargo glci variables` (needs the Docker engine and the fixture
//! images).

use std::io::Write;
use std::path::Path;

use glci_e2e::{glci_bin, run, stderr, stdout, temp_project};

const PIPELINE: &str = r#"default:
  image: glci-fixture/busybox:latest
build:
  stage: build
  script:
    - mkdir -p out && printf hello > out/a.txt && ln -s a.txt out/link
    - echo VERSION=1.2.3 > build.env
  artifacts:
    expire_in: 1 week
    paths: [out/]
    reports:
      dotenv: build.env
deploy:
  stage: deploy
  needs: [build]
  script: [echo "$VERSION"]
"#;

fn glci(dir: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    run(
        glci_bin!(),
        dir,
        args,
        &[("GLCI_HOME", home.to_str().unwrap())],
    )
}

#[test]
fn artifacts_of_the_last_run_are_listed_inspected_and_extracted_safely() {
    let home = tempfile::tempdir().unwrap();
    let project = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let dir = project.path();

    // Before any run: nothing kept, and the dotenv is not known.
    let out = glci(dir, home.path(), &["artifacts", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("no finished run of this project is kept"));
    let out = glci(dir, home.path(), &["variables", "deploy"]);
    assert!(stdout(&out).contains("dotenv of `build`: not known"));

    let out = glci(dir, home.path(), &["run", "-q"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let out = glci(dir, home.path(), &["artifacts", "list"]);
    let text = stdout(&out);
    assert!(text.starts_with("pipeline #1 (finished "), "{text}");
    assert!(text.contains("  build   success   archive "), "{text}");
    assert!(text.contains(", dotenv "), "{text}");
    assert!(text.contains("  deploy  success   no artifacts"), "{text}");

    let out = glci(dir, home.path(), &["artifacts", "inspect", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("job build of pipeline #1: success, finished "),
        "{text}"
    );
    assert!(text.contains("(expire_in: 1 week)"), "{text}");
    assert!(text.contains("  out/a.txt  5 B\n"), "{text}");
    assert!(text.contains("  out/link   → a.txt\n"), "{text}");
    assert!(text.contains("reports:\n  dotenv  "), "{text}");
    assert!(
        text.contains("dotenv variables:\n  VERSION=1.2.3\n"),
        "{text}"
    );

    // The dotenv of the run is what `variables` shows for the job that needs it.
    let out = glci(dir, home.path(), &["variables", "deploy"]);
    let text = stdout(&out);
    assert!(
        text.contains("dotenv of `build` (pipeline #1)\n  VERSION=1.2.3\n"),
        "{text}"
    );

    let to = tempfile::tempdir().unwrap();
    let dest = to.path().join("x");
    let dest_arg = dest.to_str().unwrap();
    let out = glci(
        dir,
        home.path(),
        &["artifacts", "extract", "build", "--to", dest_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dest.join("out/a.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read_link(dest.join("out/link")).unwrap(),
        Path::new("a.txt")
    );
    // Never overwrites.
    let out = glci(
        dir,
        home.path(),
        &["artifacts", "extract", "build", "--to", dest_arg],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("out exists already"),
        "{}",
        stderr(&out)
    );

    // A kept archive that escapes its directory (tampered with after the run) is refused
    // whole, as on upload: nothing lands outside, nothing inside either.
    let zip_path = home.path().join("pipelines/1/artifacts/1/archive.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("fine.txt", opts).unwrap();
    zip.write_all(b"x").unwrap();
    zip.start_file("../../escaped.txt", opts).unwrap();
    zip.write_all(b"x").unwrap();
    zip.finish().unwrap();
    let fresh = to.path().join("y");
    let out = glci(
        dir,
        home.path(),
        &[
            "artifacts",
            "extract",
            "build",
            "--to",
            fresh.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("escapes the directory"),
        "{}",
        stderr(&out)
    );
    assert!(!to.path().join("escaped.txt").exists());
    assert!(!fresh.join("escaped.txt").exists());
    assert!(!fresh.join("fine.txt").exists());

    // Another project's runs are not this project's.
    let other = temp_project(None, &[(".gitlab-ci.yml", PIPELINE)]);
    let out = glci(
        other.path(),
        home.path(),
        &["artifacts", "inspect", "build"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no finished run of job `build` of this project"),
        "{}",
        stderr(&out)
    );
}
