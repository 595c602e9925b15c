//! Services: the aliases GitLab derives from a service's image name, and the wait until a
//! service accepts connections on its exposed ports.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The image name without tag or digest (`registry:5000/a/b:1@sha256:…` → `registry:5000/a/b`).
pub fn image_path(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match (image.rfind(':'), image.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &image[..colon],
        (Some(colon), None) => &image[..colon],
        _ => image,
    }
}

/// Network aliases of a service, in the runner's order: `/` → `__`, then `/` → `-` when
/// different, then each configured alias (comma or space separated); duplicates dropped.
pub fn service_aliases(image: &str, alias: &str) -> Vec<String> {
    let path = image_path(image);
    let mut aliases = vec![path.replace('/', "__")];
    let dashed = path.replace('/', "-");
    aliases.push(dashed);
    aliases.extend(
        alias
            .split([',', ' '])
            .filter(|a| !a.is_empty())
            .map(str::to_string),
    );
    let mut seen = std::collections::HashSet::new();
    aliases.retain(|a| seen.insert(a.clone()));
    aliases
}

/// The container-name suffix of a service (`/` → `__`, `:` dropped), as the runner names them.
pub fn service_slug(image: &str) -> String {
    image_path(image)
        .replace('/', "__")
        .replace([':', '.'], "-")
}

/// Waits until every port accepts a TCP connection at `ip`, or the timeout passes. Returns
/// the ports that never answered.
pub async fn wait_for_ports(ip: IpAddr, ports: &[u16], timeout: Duration) -> Vec<u16> {
    let deadline = Instant::now() + timeout;
    let mut waiting: Vec<u16> = ports.to_vec();
    while !waiting.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for &port in &waiting {
            let attempt = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect((ip, port)),
            )
            .await;
            if !matches!(attempt, Ok(Ok(_))) {
                still.push(port);
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_gitlab_derivation() {
        assert_eq!(service_aliases("postgres:16", ""), ["postgres"]);
        assert_eq!(
            service_aliases("bitnami/postgresql:16", "db, pg"),
            ["bitnami__postgresql", "bitnami-postgresql", "db", "pg"]
        );
        assert_eq!(
            service_aliases("registry.local:5000/group/redis@sha256:abc", ""),
            [
                "registry.local:5000__group__redis",
                "registry.local:5000-group-redis"
            ]
        );
        assert_eq!(
            service_aliases("tutum/wordpress:latest", "wordpress"),
            ["tutum__wordpress", "tutum-wordpress", "wordpress"]
        );
    }

    #[tokio::test]
    async fn waits_for_a_listening_port_and_reports_a_dead_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let dead = wait_for_ports(ip, &[open, closed], Duration::from_millis(300)).await;
        assert_eq!(dead, [closed]);
    }
}
