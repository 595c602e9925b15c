//! The S3 cache endpoint against an independent SigV4 implementation: Python's `botocore`
//! presigns (and header-signs) requests, `curl` sends them.

use crate::support;

use std::time::Duration;

use glci_test::server::{RunningServer, S3Credentials, Server, ServerConfig};
use support::curl;

/// botocore, configured like the runner's s3v2 adapter: path style, SigV4.
const PRESIGN: &str = r#"
import sys, botocore.session
from botocore.config import Config
endpoint, ak, sk, region, bucket, key, method, expires, meta = sys.argv[1:10]
session = botocore.session.get_session()
client = session.create_client('s3', region_name=region, endpoint_url=endpoint,
    aws_access_key_id=ak, aws_secret_access_key=sk,
    config=Config(signature_version='s3v4', s3={'addressing_style': 'path'}))
if method == 'LOCATION':
    print(repr(client.get_bucket_location(Bucket=bucket).get('LocationConstraint')))
    sys.exit(0)
if method == 'PUTOBJ':
    client.put_object(Bucket=bucket, Key=key, Body=meta.encode())
    print(client.get_object(Bucket=bucket, Key=key)['Body'].read().decode())
    sys.exit(0)
if method == 'TAMPER':
    # Sign one body, send another: the signed payload hash must catch it.
    import urllib.request, urllib.error
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    url = endpoint + '/' + bucket + '/' + key
    req = AWSRequest(method='PUT', url=url, data=b'signed body')
    S3SigV4Auth(Credentials(ak, sk), 's3', region).add_auth(req)
    headers = dict(req.headers.items())
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b'other body', headers=headers, method='PUT'))
        print('200')
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())
    sys.exit(0)
op = {'GET': 'get_object', 'PUT': 'put_object', 'HEAD': 'head_object'}[method]
params = {'Bucket': bucket, 'Key': key}
if meta:
    params['Metadata'] = {'cachekey': meta}
print(client.generate_presigned_url(op, Params=params, ExpiresIn=int(expires), HttpMethod=method))
"#;

fn botocore(creds: &S3Credentials, key: &str, method: &str, expires: u64, meta: &str) -> String {
    botocore_with(creds, &creds.secret_key, key, method, expires, meta)
}

fn botocore_with(
    creds: &S3Credentials,
    secret: &str,
    key: &str,
    method: &str,
    expires: u64,
    meta: &str,
) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(PRESIGN)
        .args([
            &format!("http://{}", creds.server_address),
            &creds.access_key,
            secret,
            &creds.region,
            &creds.bucket,
            key,
            method,
            &expires.to_string(),
            meta,
        ])
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .output()
        .expect("python3 runs (pip install boto3 if botocore is missing)");
    assert!(
        out.status.success(),
        "botocore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn start(configure: impl FnOnce(&mut ServerConfig)) -> (tempfile::TempDir, RunningServer) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = ServerConfig::new(tmp.path().join("data"));
    configure(&mut config);
    let server = Server::start(config).await.expect("server starts");
    (tmp, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_put_get_head_round_trip() {
    let (tmp, server) = start(|_| {}).await;
    let creds = server.s3_credentials();
    assert_eq!(creds.bucket, "glci-cache");
    // A key ending in `.git` is still S3, not a repository.
    let key = "runner/abc/project/3/cargo-non_protected.git";
    let payload = tmp.path().join("cache.zip");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&payload, &data).expect("write");

    // Missing object: GET 404 NoSuchKey, HEAD 404.
    let get_url = botocore(&creds, key, "GET", 3600, "");
    let missing = curl(&[&get_url]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("<Code>NoSuchKey</Code>"));
    let head_url = botocore(&creds, key, "HEAD", 3600, "");
    assert_eq!(curl(&["-I", &head_url]).await.status, 404);

    // PUT with signed metadata, as the runner's helper does.
    let put_url = botocore(&creds, key, "PUT", 3600, "cargo");
    let put = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        "x-amz-meta-cachekey: cargo",
        "--data-binary",
        &format!("@{}", payload.display()),
        &put_url,
    ])
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let etag = put.header("etag").expect("ETag").to_string();

    let got = curl(&[&get_url]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, data);
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    assert_eq!(got.header("x-amz-meta-cachekey"), Some("cargo"));
    assert!(got.header("last-modified").is_some());

    let head = curl(&["-I", &head_url]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100000"));
    // (curl -I writes the headers as its output; the server sent no body bytes.)
    assert!(!head.body.contains(&data[1]));

    // The parallel-transfer probe: Range bytes=0-0 → 206 with the total.
    let probe = curl(&["-r", "0-0", &get_url]).await;
    assert_eq!(probe.status, 206);
    assert_eq!(probe.header("content-range"), Some("bytes 0-0/100000"));
    assert_eq!(probe.body, vec![data[0]]);
    let tail = curl(&["-r", "99990-", &get_url]).await;
    assert_eq!(tail.body, data[99_990..]);

    // Header-signed requests with a signed payload hash (botocore over plain http).
    let echoed = botocore(
        &creds,
        "header/signed",
        "PUTOBJ",
        0,
        "payload via header auth",
    );
    assert_eq!(echoed, "payload via header auth");

    let tampered = botocore(&creds, "header/tampered", "TAMPER", 0, "");
    assert!(
        tampered.starts_with("400") && tampered.contains("XAmzContentSHA256Mismatch"),
        "{tampered}"
    );

    // The runner's header-signed GetBucketLocation.
    let location = botocore(&creds, "", "LOCATION", 0, "");
    assert_eq!(location, "None", "us-east-1 is an empty LocationConstraint");

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_expired_urls_and_unsigned_requests_are_refused() {
    let (_tmp, server) = start(|_| {}).await;
    let creds = server.s3_credentials();
    let key = "k/with spaces+plus";

    let put_url = botocore(&creds, key, "PUT", 3600, "");
    let ok = curl(&["-X", "PUT", "--data-binary", "hello", &put_url]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let get_url = botocore(&creds, key, "GET", 3600, "");
    assert_eq!(curl(&[&get_url]).await.text(), "hello");

    // One changed signature digit.
    let mut tampered = get_url.clone();
    let last = tampered.pop().expect("non-empty URL");
    tampered.push(if last == '0' { '1' } else { '0' });
    let r = curl(&[&tampered]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("SignatureDoesNotMatch"), "{}", r.text());

    // Signed with another secret.
    let foreign = botocore_with(&creds, "not-the-secret", key, "GET", 3600, "");
    let r = curl(&[&foreign]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("SignatureDoesNotMatch"));

    // A GET URL used for PUT: the method is signed.
    let r = curl(&["-X", "PUT", "--data-binary", "evil", &get_url]).await;
    assert_eq!(r.status, 403);
    assert_eq!(curl(&[&get_url]).await.text(), "hello");

    // Another key under the same signature.
    let moved = get_url.replacen("/k/", "/x/", 1);
    assert_eq!(curl(&[&moved]).await.status, 403);

    // No signature at all.
    let plain = format!("http://{}/{}/k", creds.server_address, creds.bucket);
    let r = curl(&[&plain]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("AccessDenied"));

    // Expired.
    let short = botocore(&creds, key, "GET", 1, "");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = curl(&[&short]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("Request has expired"), "{}", r.text());

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_eviction_and_ttl() {
    let (tmp, server) = start(|c| {
        c.s3.max_entry_bytes = 40_000;
        // Room for two 30 kB objects with their 8 KiB headers, not three.
        c.s3.max_total_bytes = 2 * (30_000 + 8192) + 1000;
    })
    .await;
    let creds = server.s3_credentials();
    let big = tmp.path().join("big");
    std::fs::write(&big, vec![7u8; 50_000]).expect("write");
    let mid = tmp.path().join("mid");
    std::fs::write(&mid, vec![9u8; 30_000]).expect("write");

    let r = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", big.display()),
        &botocore(&creds, "big", "PUT", 600, ""),
    ])
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("EntityTooLarge"), "{}", r.text());
    assert_eq!(
        curl(&[&botocore(&creds, "big", "GET", 600, "")])
            .await
            .status,
        404
    );

    for key in ["a", "b", "c"] {
        let r = curl(&[
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", mid.display()),
            &botocore(&creds, key, "PUT", 600, ""),
        ])
        .await;
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        // Distinct modification times decide eviction order.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        curl(&[&botocore(&creds, "a", "GET", 600, "")]).await.status,
        404,
        "oldest object evicted"
    );
    for key in ["b", "c"] {
        let r = curl(&[&botocore(&creds, key, "GET", 600, "")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 30_000);
    }
    server.shutdown().await;

    // An object under the entry cap but over the total cap: nothing can be evicted for it.
    let (tmp3, server) = start(|c| {
        c.s3.max_entry_bytes = 40_000;
        c.s3.max_total_bytes = 20_000;
    })
    .await;
    let creds = server.s3_credentials();
    let r = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", mid.display()),
        &botocore(&creds, "m", "PUT", 600, ""),
    ])
    .await;
    assert_eq!(r.status, 507, "{}", r.text());
    drop(tmp3);
    server.shutdown().await;

    // Both URLs are signed before the PUT (signing runs Python, slow on a loaded machine), so
    // only two curl calls sit between the write and the first read.
    let (_tmp2, server) = start(|c| c.s3.ttl = Duration::from_secs(3)).await;
    let creds = server.s3_credentials();
    let put = botocore(&creds, "t", "PUT", 600, "");
    let get = botocore(&creds, "t", "GET", 600, "");
    let r = curl(&["-X", "PUT", "--data-binary", "short-lived", &put]).await;
    assert_eq!(r.status, 200);
    assert_eq!(curl(&[&get]).await.status, 200);
    // Ages count in whole seconds (`last-modified` precision): expired once more than 3
    // whole seconds have passed, i.e. surely after 4.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(curl(&[&get]).await.status, 404, "expired by TTL");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_name_is_configurable_and_other_buckets_are_not_s3() {
    let (_tmp, server) = start(|c| c.s3.bucket = "runner-cache".to_string()).await;
    let creds = server.s3_credentials();
    assert_eq!(creds.bucket, "runner-cache");
    let put = botocore(&creds, "x", "PUT", 600, "");
    assert!(put.contains("/runner-cache/x?"), "{put}");
    assert_eq!(
        curl(&["-X", "PUT", "--data-binary", "1", &put])
            .await
            .status,
        200
    );
    let r = curl(&[&format!("http://{}/glci-cache/x", creds.server_address)]).await;
    assert_eq!(r.status, 404);
    server.shutdown().await;
}
