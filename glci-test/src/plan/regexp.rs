//! `only:refs`/`except:refs` regexps (`/body/flags`): RE2 syntax with Ruby-style flags,
//! compiled once per configuration. A leaf, so the model (which checks them when reading)
//! and the policy evaluation (which matches them) share it without importing each other.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use regex::Regex;

/// `/body/flags` → (body, flags) when the item is written as a regexp.
pub fn split_regex(item: &str) -> Option<(&str, &str)> {
    let rest = item.strip_prefix('/')?;
    let end = rest.rfind('/')?;
    let (body, flags) = (&rest[..end], &rest[end + 1..]);
    (!body.is_empty() && flags.chars().all(|c| "ismxU".contains(c))).then_some((body, flags))
}

/// Compiles an RE2-syntax regexp with Ruby-style flags; `None` when RE2 rejects it.
pub fn compile(body: &str, flags: &str) -> Option<Regex> {
    let flags: String = flags.chars().filter(|c| "imsU".contains(*c)).collect();
    let src = if flags.is_empty() {
        body.to_string()
    } else {
        format!("(?{flags}){body}")
    };
    Regex::new(&src).ok()
}

/// Compiled `only`/`except` ref regexps by `flags/body`, kept with the configuration.
#[derive(Default)]
pub struct RegexCache {
    compiled: Mutex<HashMap<String, Option<Regex>>>,
}

impl fmt::Debug for RegexCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegexCache")
    }
}

impl RegexCache {
    pub(crate) fn is_match(&self, body: &str, flags: &str, text: &str) -> Option<bool> {
        let mut map = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{flags}/{body}");
        let re = map.entry(key).or_insert_with(|| compile(body, flags));
        re.as_ref().map(|r| r.is_match(text))
    }
}
