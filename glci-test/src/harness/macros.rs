//! `glci_test::main!` and `glci_test::assert_plan_snapshot!`, and the option functions the
//! `main!` form calls. The macros expand in the user's crate, so `env!("CARGO_MANIFEST_DIR")`
//! and insta's workspace detection resolve there (the datatest-stable pattern).

/// `fn main` for a `[[test]] name = "ci" harness = false` target: one test per CI job.
///
/// ```no_run
/// // tests/ci.rs
/// glci_test::main!();
/// ```
///
/// With options (each `key = value`; all optional; `GLCI_*` environment variables win, see
/// [`harness::env`](crate::harness::env)):
///
/// ```no_run
/// glci_test::main! {
///     file = ".gitlab-ci.yml",
///     branch = "main",                 // or tag = "v1.0.0"
///     source = "push",                 // CI_PIPELINE_SOURCE
///     vars = [("DEPLOY", "false")],
///     masked_vars = [("API_TOKEN", "not-a-real-token")],
///     snapshots = ["build", "test"],   // ["*"]: every job
///     snapshot_dir = "tests/snapshots",
///     redact = [(r"build \d+", "build [N]")],
///     report_tests = true,             // a test per JUnit case too
/// }
/// ```
///
/// Misuse is a compile error, not a surprise at run time (these examples are compile-fail
/// doctests: `cargo test --doc -p glci-test`). An unknown option names itself:
///
/// ```compile_fail,E0425
/// glci_test::main! { brnach = "main" }
/// ```
///
/// A value of the wrong type:
///
/// ```compile_fail,E0308
/// glci_test::main! { branch = 42 }
/// ```
///
/// A list where pairs are expected:
///
/// ```compile_fail,E0271
/// glci_test::main! { vars = ["DEPLOY=false"] }
/// ```
///
/// One name where a list is expected:
///
/// ```compile_fail,E0277
/// glci_test::main! { snapshots = "build" }
/// ```
///
/// Anything but `key = value` pairs:
///
/// ```compile_fail
/// glci_test::main! { branch: "main" }
/// ```
///
/// ```compile_fail
/// glci_test::main! { "main" }
/// ```
#[macro_export]
macro_rules! main {
    () => {
        fn main() -> ::std::process::ExitCode {
            // This binary is also the relay agent for remote engines (`glci_test::relay`).
            $crate::relay::serve_if_asked();
            $crate::harness::Harness::new(env!("CARGO_MANIFEST_DIR")).main()
        }
    };
    ($($key:ident = $value:expr),+ $(,)?) => {
        fn main() -> ::std::process::ExitCode {
            $crate::relay::serve_if_asked();
            let harness = $crate::harness::Harness::new(env!("CARGO_MANIFEST_DIR"));
            $( let harness = $crate::harness::macros::option::$key(harness, $value); )+
            harness.main()
        }
    };
}

/// Snapshots which jobs run, in which stage and with which `when`, for a
/// [`Pipeline`](crate::harness::Pipeline) — "which jobs run on a tag?" in one line. The
/// snapshot is named after the calling test, like `insta::assert_snapshot!`.
///
/// ```no_run
/// #[test]
/// fn tag_pipeline() {
///     let dir = env!("CARGO_MANIFEST_DIR");
///     glci_test::assert_plan_snapshot!(glci_test::harness::Pipeline::new(dir).tag("v1.0.0"));
/// }
/// ```
#[macro_export]
macro_rules! assert_plan_snapshot {
    ($pipeline:expr $(,)?) => {{
        let text = $crate::harness::test_api::plan_text(&$pipeline);
        $crate::__insta::assert_snapshot!(text)
    }};
    ($name:expr, $pipeline:expr $(,)?) => {{
        let text = $crate::harness::test_api::plan_text(&$pipeline);
        $crate::__insta::assert_snapshot!($name, text)
    }};
}

/// One function per `main!` option; an unknown option is a compile error naming it here.
pub mod option {
    use crate::harness::Harness;

    pub fn file(h: Harness, file: &str) -> Harness {
        h.file(file)
    }

    pub fn branch(h: Harness, branch: &str) -> Harness {
        h.branch(branch)
    }

    pub fn tag(h: Harness, tag: &str) -> Harness {
        h.tag(tag)
    }

    /// A bad name is reported when the harness starts (exit code 2), naming the option.
    pub fn source(h: Harness, source: &str) -> Harness {
        h.source_str(source)
    }

    pub fn vars<'a>(mut h: Harness, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Harness {
        for (k, v) in vars {
            h = h.var(k, v);
        }
        h
    }

    pub fn masked_vars<'a>(
        mut h: Harness,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Harness {
        for (k, v) in vars {
            h = h.masked_var(k, v);
        }
        h
    }

    pub fn snapshots<'a>(h: Harness, jobs: impl IntoIterator<Item = &'a str>) -> Harness {
        h.snapshots(jobs)
    }

    pub fn snapshot_dir(h: Harness, dir: &str) -> Harness {
        h.snapshot_dir(dir)
    }

    /// A test per JUnit case of each job's last recorded run, `<job>/<suite>::<case>`.
    pub fn report_tests(h: Harness, on: bool) -> Harness {
        h.report_tests(on)
    }

    pub fn redact<'a>(
        mut h: Harness,
        redactions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Harness {
        for (pattern, replacement) in redactions {
            h = h.redact(pattern, replacement);
        }
        h
    }
}
