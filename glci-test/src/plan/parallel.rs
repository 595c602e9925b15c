//! `parallel: N` and `parallel:matrix` expansion into concrete jobs, with GitLab's names
//! (`Gitlab::Ci::Config::Normalizer`), and the name rewriting of `needs`/`dependencies`.

use crate::plan::StrMap;

use super::model::{JobConfig, MatrixEntry, Need, Parallel};

/// One concrete job produced from a configured job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    /// `(CI_NODE_INDEX, CI_NODE_TOTAL)` for parallel jobs.
    pub node: Option<(u32, u32)>,
    /// Matrix values, which override job variables of the same name.
    pub matrix: StrMap<String>,
}

/// The cartesian product of one matrix entry, first key varying slowest.
pub fn product(entry: &MatrixEntry) -> Vec<Vec<(&str, &str)>> {
    let mut rows: Vec<Vec<(&str, &str)>> = vec![Vec::new()];
    for (key, values) in entry {
        let mut next = Vec::with_capacity(rows.len() * values.len());
        for row in &rows {
            for v in values {
                let mut r = row.clone();
                r.push((key.as_str(), v.as_str()));
                next.push(r);
            }
        }
        rows = next;
    }
    rows
}

/// `<name>: [v1, v2]`.
pub fn matrix_name(job: &str, row: &[(&str, &str)]) -> String {
    let values: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
    format!("{job}: [{}]", values.join(", "))
}

/// The concrete jobs of one configured job (itself when not parallel).
pub fn instances(job: &JobConfig) -> Vec<Instance> {
    match &job.parallel {
        None => vec![Instance {
            name: job.name.clone(),
            node: None,
            matrix: StrMap::default(),
        }],
        Some(Parallel::Count(n)) => (1..=*n)
            .map(|i| Instance {
                name: format!("{} {i}/{n}", job.name),
                node: Some((i, *n)),
                matrix: StrMap::default(),
            })
            .collect(),
        Some(Parallel::Matrix(entries)) => {
            let rows: Vec<Vec<(&str, &str)>> = entries.iter().flat_map(product).collect();
            let total = u32::try_from(rows.len()).unwrap_or(u32::MAX);
            // Identical value lists give identical names: the later one replaces the earlier
            // in place, as a Ruby hash assignment would.
            let mut out: StrMap<Instance> =
                StrMap::with_capacity_and_hasher(rows.len(), Default::default());
            for (i, row) in rows.iter().enumerate() {
                let name = matrix_name(&job.name, row);
                let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let matrix = row
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                out.insert(
                    name.clone(),
                    Instance {
                        name,
                        node: Some((index, total)),
                        matrix,
                    },
                );
            }
            out.into_values().collect()
        }
    }
}

/// Why `$[[ matrix.VAR ]]` could not be replaced (GitLab's text, without the job prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("'{0}' does not exist in matrix configuration")]
    UnknownVariable(String),
}

/// Replaces `$[[ matrix.VAR ]]` in a need's job name or matrix values with this instance's
/// values. Unknown names give GitLab's error text (without the job prefix).
pub fn interpolate_matrix(text: &str, matrix: &StrMap<String>) -> Result<String, MatrixError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("$[[") {
        let Some(len) = rest[start..].find("]]") else {
            break;
        };
        let inner = rest[start + 3..start + len].trim();
        out.push_str(&rest[..start]);
        match inner.strip_prefix("matrix.") {
            Some(var) => match matrix.get(var) {
                Some(v) => out.push_str(v),
                None => return Err(MatrixError::UnknownVariable(var.to_string())),
            },
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The concrete job names one `needs` item designates. `parallel_names` maps a configured
/// parallel job to its instance names.
pub fn need_names(need: &Need, parallel_names: &StrMap<Vec<String>>) -> Vec<String> {
    if let Some(entries) = &need.matrix {
        return entries
            .iter()
            .flat_map(product)
            .map(|row| matrix_name(&need.job, &row))
            .collect();
    }
    match parallel_names.get(&need.job) {
        Some(names) => names.clone(),
        None => vec![need.job.clone()],
    }
}
