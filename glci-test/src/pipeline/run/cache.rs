//! The built-in runners' `[runners.cache]` (`Type = "s3"`), translated from the stand-in's S3
//! credentials. The runner knows nothing of the server's types (they meet only on the wire),
//! so the translation lives here, with the code that wires the two together.

use crate::runner::cache::CacheConfig;
use crate::runner::s3_presign::S3Target;
use crate::server::S3Credentials;

/// The cache of a glci server, over plain HTTP. `shared`: no `runner/<short token>/` part in
/// the object keys, so the cache outlives the per-pipeline runner tokens.
pub fn runner_cache_config(creds: &S3Credentials, shared: bool) -> CacheConfig {
    CacheConfig {
        s3: S3Target {
            server_address: creds.server_address.clone(),
            bucket: creds.bucket.clone(),
            region: creds.region.clone(),
            access_key: creds.access_key.clone(),
            secret_key: creds.secret_key.clone(),
            insecure: true,
        },
        path: String::new(),
        shared,
    }
}
