//! `POST /projects/:id/releases` (`API::Releases#create`), what `release-cli create`,
//! `glab release create` and glci's `release:` step send. glci keeps the release with the
//! job (shown in the run's summary and the job's log) instead of creating a tag.

use std::time::SystemTime;

use http::StatusCode;
use serde_json::{json, Value};

use super::{bad_request, note, Caller};
use crate::calendar::rfc3339;
use crate::server::http::{self as h, Response};
use crate::server::params;
use crate::server::runner_api::state::{Release, ReleaseAssetLink};
use crate::server::Shared;

/// `body`: the request's parameters (query and body), read by the router.
pub(super) fn create(shared: &Shared, caller: &Caller, body: Value) -> Response {
    let Some(tag_name) = params::string(&body, "tag_name").filter(|t| !t.trim().is_empty()) else {
        return bad_request("tag_name is missing");
    };
    let links = match links(&body) {
        Ok(links) => links,
        Err(missing) => return bad_request(&format!("assets[links][{missing}] is missing")),
    };
    let release = Release {
        job: caller.id,
        tag_name: tag_name.to_string(),
        // GitLab names a release after its tag when no name is given.
        name: params::string(&body, "name")
            .filter(|n| !n.is_empty())
            .unwrap_or(tag_name)
            .to_string(),
        description: params::string(&body, "description")
            .unwrap_or_default()
            .to_string(),
        ref_name: params::string(&body, "ref").unwrap_or_default().to_string(),
        released_at: params::string(&body, "released_at")
            .map(str::to_string)
            .unwrap_or_else(|| rfc3339(SystemTime::now())),
        milestones: params::list(&body, "milestones"),
        links,
    };
    let mut inner = shared.api.lock();
    if inner
        .releases
        .iter()
        .any(|r| r.tag_name == release.tag_name)
    {
        return h::json_message(StatusCode::CONFLICT, "Release already exists");
    }
    let line = format!(
        "glci: release {:?} created for tag {:?}{}{}",
        release.name,
        release.tag_name,
        release
            .links
            .iter()
            .map(|l| format!(", link {:?} → {}", l.name, l.url))
            .collect::<String>(),
        if release.ref_name.is_empty() {
            String::new()
        } else {
            format!(" (ref {})", release.ref_name)
        }
    );
    note(&mut inner, caller.id, line);
    inner.releases.push(release.clone());
    drop(inner);
    let project_url = format!("{}/{}", shared.url, caller.project_path);
    let tag_path = format!("/{}/-/tags/{}", caller.project_path, release.tag_name);
    h::json(
        StatusCode::CREATED,
        &json!({
            "name": release.name,
            "tag_name": release.tag_name,
            "description": release.description,
            "created_at": rfc3339(SystemTime::now()),
            "released_at": release.released_at,
            "upcoming_release": false,
            "author": null,
            "commit": null,
            "milestones": release.milestones.iter().map(|m| json!({ "title": m })).collect::<Vec<_>>(),
            "commit_path": null,
            "tag_path": tag_path,
            "assets": {
                "count": release.links.len(),
                "sources": [],
                "links": release.links.iter().enumerate().map(|(i, l)| json!({
                    "id": i + 1,
                    "name": l.name,
                    "url": l.url,
                    "direct_asset_url": l.direct_asset_path.as_ref().map(|p| format!(
                        "{project_url}/-/releases/{}/downloads{p}", release.tag_name
                    )).unwrap_or_else(|| l.url.clone()),
                    "link_type": l.link_type,
                })).collect::<Vec<_>>(),
            },
            "evidences": [],
            "_links": {
                "self": format!("{project_url}/-/releases/{}", release.tag_name),
            },
        }),
    )
}

/// `assets[links]` (a JSON array, or form pairs `assets[links][][name]=…`): `name` and `url`
/// are required (`Err`: the missing one), `link_type` defaults to `other`.
fn links(body: &Value) -> Result<Vec<ReleaseAssetLink>, &'static str> {
    let Some(Value::Array(items)) = body.pointer("/assets/links") else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| {
            let text = |key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            };
            Ok(ReleaseAssetLink {
                name: text("name").ok_or("name")?,
                url: text("url").ok_or("url")?,
                direct_asset_path: text("direct_asset_path").or_else(|| text("filepath")),
                link_type: text("link_type").unwrap_or_else(|| "other".to_string()),
            })
        })
        .collect()
}
