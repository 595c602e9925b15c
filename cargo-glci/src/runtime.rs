//! The async runtime the commands that talk to Docker or a server run on.

use std::process::ExitCode;

use anyhow::Result;

/// Runs `f` to completion on a new multi-threaded runtime.
pub fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(f: F) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(f)
}
