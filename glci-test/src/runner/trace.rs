//! The job log as the official runner writes it: runner messages in GitLab's colours, section
//! markers around each stage, the job's output — with masked values replaced by `[MASKED]`
//! before a byte is stored, so no consumer (trace upload, terminal, snapshot) can see them.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

const ESC: &str = "\u{1b}";
pub const MASK: &str = "[MASKED]";
/// Token prefixes the official runner masks wherever they start a word (FF_MASK_ALL_DEFAULT_TOKENS).
const TOKEN_PREFIXES: &[&str] = &[
    "glpat-", "glrt-", "glcbt-", "gldt-", "glptt-", "glft-", "glimt-", "glagent-", "glsoat-",
    "gloas-", "glcst-", "glffct-", "glrtr-",
];
/// Output kept back while no newline came, at most: a longer line is masked and flushed in parts.
const MAX_PENDING: usize = 64 * 1024;

/// Replaces secrets in log text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
}

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Masker {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker { values }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        mask_token_words(&out)
    }
}

/// Masks every word that starts with a GitLab token prefix, up to the end of the word.
fn mask_token_words(text: &str) -> String {
    if !TOKEN_PREFIXES.iter().any(|p| text.contains(p)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for p in TOKEN_PREFIXES {
            if rest.starts_with(p) && out.chars().last().is_none_or(|c| !is_token_char(c)) {
                let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
                out.push_str(MASK);
                rest = &rest[end..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

#[derive(Debug, Default)]
struct TraceState {
    log: Vec<u8>,
    /// Job output after the last newline, held back so a secret split across chunks is masked.
    pending: Vec<u8>,
}

/// The log of one job. Cloning gives another handle to the same log.
#[derive(Debug, Clone)]
pub struct Trace {
    state: Arc<Mutex<TraceState>>,
    masker: Arc<Masker>,
    sections: bool,
    len_tx: Arc<watch::Sender<usize>>,
}

impl Trace {
    /// A new log; `sections` = the payload's `features.trace_sections`.
    pub fn new(masker: Masker, sections: bool) -> Trace {
        let (len_tx, _) = watch::channel(0);
        Trace {
            state: Arc::default(),
            masker: Arc::new(masker),
            sections,
            len_tx: Arc::new(len_tx),
        }
    }

    /// Notified with the stored length whenever the log grows.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.len_tx.subscribe()
    }

    /// Everything stored so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().log.clone()
    }

    /// Bytes stored from `offset` on.
    pub fn bytes_from(&self, offset: usize) -> Vec<u8> {
        let state = self.lock();
        state
            .log
            .get(offset..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.lock().log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceState> {
        // A panic while holding the lock leaves a log that is still valid bytes: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append_masked(&self, state: &mut TraceState, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        state
            .log
            .extend_from_slice(self.masker.mask(&text).as_bytes());
    }

    fn publish(&self, len: usize) {
        self.len_tx.send_replace(len);
    }

    /// Runner text, masked, with pending job output flushed first so the order is kept.
    fn runner_text(&self, text: &str) {
        let mut state = self.lock();
        Self::flush_pending_locked(self, &mut state);
        let masked = self.masker.mask(text);
        state.log.extend_from_slice(masked.as_bytes());
        let len = state.log.len();
        drop(state);
        self.publish(len);
    }

    fn flush_pending_locked(&self, state: &mut TraceState) {
        if !state.pending.is_empty() {
            let pending = std::mem::take(&mut state.pending);
            self.append_masked(state, &pending);
        }
    }

    /// A plain runner line (`Println`): `\e[0K<text>\e[0;m`.
    pub fn line(&self, text: &str) {
        self.runner_text(&format!("{ESC}[0K{text}{ESC}[0;m\n"));
    }

    /// A bold green runner line (`Infoln`), e.g. `Job succeeded`.
    pub fn info(&self, text: &str) {
        self.runner_text(&format!("{ESC}[32;1m{text}{ESC}[0;m\n"));
    }

    pub fn warning(&self, text: &str) {
        self.runner_text(&format!("{ESC}[0;33mWARNING: {text}{ESC}[0;m\n"));
    }

    pub fn error(&self, text: &str) {
        self.runner_text(&format!("{ESC}[31;1mERROR: {text}{ESC}[0;m\n"));
    }

    /// `section_start` marker and the stage's cyan description line.
    pub fn section_start(&self, name: &str, description: &str) {
        if self.sections {
            self.runner_text(&format!("section_start:{}:{name}\r{ESC}[0K", unix_now()));
        }
        self.runner_text(&format!("{ESC}[0K{ESC}[36;1m{description}{ESC}[0;m\n"));
    }

    pub fn section_end(&self, name: &str) {
        if self.sections {
            self.runner_text(&format!("section_end:{}:{name}\r{ESC}[0K\n", unix_now()));
        } else {
            self.flush();
        }
    }

    /// Job output, as it arrives in chunks. Complete lines are masked and stored at once; a
    /// partial line waits for its newline (or a flush).
    pub fn output(&self, bytes: &[u8]) {
        let mut state = self.lock();
        state.pending.extend_from_slice(bytes);
        let cut = match state.pending.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if state.pending.len() > MAX_PENDING => state.pending.len(),
            None => return,
        };
        let ready: Vec<u8> = state.pending.drain(..cut).collect();
        self.append_masked(&mut state, &ready);
        let len = state.log.len();
        drop(state);
        self.publish(len);
    }

    /// Stores any held-back partial line.
    pub fn flush(&self) {
        let mut state = self.lock();
        self.flush_pending_locked(&mut state);
        let len = state.log.len();
        drop(state);
        self.publish(len);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_split_across_chunks() {
        let trace = Trace::new(Masker::new(["s3cr3t-value".to_string()]), true);
        trace.output(b"the secret is s3cr");
        trace.output(b"3t-value and more\npartial s3cr3t-");
        trace.output(b"value");
        trace.flush();
        let log = String::from_utf8(trace.bytes()).unwrap();
        assert_eq!(log, "the secret is [MASKED] and more\npartial [MASKED]");
    }

    #[test]
    fn masks_token_words_but_not_inside_other_words() {
        let m = Masker::new([]);
        assert_eq!(
            m.mask("token glcbt-64_abc.DEF-x; end"),
            "token [MASKED]; end"
        );
        assert_eq!(m.mask("xglpat-abc"), "xglpat-abc");
        assert_eq!(m.mask("(glpat-abc)"), "([MASKED])");
    }

    #[test]
    fn longer_secret_wins_over_its_substring() {
        let m = Masker::new(["abc".to_string(), "abcdef".to_string()]);
        assert_eq!(m.mask("abcdef abc"), "[MASKED] [MASKED]");
    }

    #[test]
    fn runner_lines_keep_order_with_pending_output() {
        let trace = Trace::new(Masker::default(), true);
        trace.output(b"no newline yet");
        trace.info("Job succeeded");
        let log = String::from_utf8(trace.bytes()).unwrap();
        assert_eq!(log, "no newline yet\u{1b}[32;1mJob succeeded\u{1b}[0;m\n");
    }

    #[test]
    fn sections_are_marked_only_when_the_feature_is_on() {
        let on = Trace::new(Masker::default(), true);
        on.section_start(
            "step_script",
            "Executing \"step_script\" stage of the job script",
        );
        on.section_end("step_script");
        let log = String::from_utf8(on.bytes()).unwrap();
        assert!(log.starts_with("section_start:"), "{log}");
        assert!(log.contains(":step_script\r\u{1b}[0K"), "{log}");
        assert!(log.contains("section_end:"), "{log}");

        let off = Trace::new(Masker::default(), false);
        off.section_start("step_script", "x");
        assert!(!String::from_utf8(off.bytes()).unwrap().contains("section_"));
    }
}
