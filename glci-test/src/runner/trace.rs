//! The job log as the official runner writes it: runner messages in GitLab's colours, section
//! markers around each stage, the job's output — with masked values replaced by `[MASKED]`
//! before a byte is stored, so no consumer (trace upload, terminal, snapshot) can see them.
//!
//! The log is bytes, as GitLab keeps it: job output is stored as the job wrote it, invalid
//! UTF-8 included; only terminal rendering and snapshots make text of it. Like the official
//! runner's trace buffer it lives in a temporary file (past the first MiB), so a long log
//! costs disk, not memory, and its size and CRC32 are kept as it grows for the final update.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::SpooledTempFile;
use tokio::sync::watch;

const ESC: &str = "\u{1b}";
pub const MASK: &str = "[MASKED]";
/// Token prefixes the official runner masks wherever they start a word (FF_MASK_ALL_DEFAULT_TOKENS).
const TOKEN_PREFIXES: &[&str] = &[
    "glpat-", "glrt-", "glcbt-", "gldt-", "glptt-", "glft-", "glimt-", "glagent-", "glsoat-",
    "gloas-", "glcst-", "glffct-", "glrtr-",
];
/// Log bytes kept in memory before the log moves to a temporary file.
const IN_MEMORY: usize = 1 << 20;
/// Most bytes a job's log may hold (the official runner's `output_limit`). Past it the runner
/// says so in the log and keeps nothing more. Below the stand-in's 100 MiB trace limit, so a
/// chatty job is cut with a notice instead of being failed by the server.
pub const OUTPUT_LIMIT: u64 = 96 * 1024 * 1024;

/// Replaces secrets in log bytes: masked variable values, and words starting with a GitLab
/// token prefix.
#[derive(Debug, Clone)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<Vec<u8>>,
    /// Bytes a secret or token prefix starts with: every other byte is passed on at once.
    starts: [bool; 256],
}

impl Default for Masker {
    fn default() -> Masker {
        Masker::new([])
    }
}

/// What the input at one position is.
enum Found {
    /// Not the start of a secret.
    Nothing,
    /// A secret (or a token prefix, whose word is masked to its end) of `len` bytes.
    Secret { len: usize, token: bool },
    /// The input ends inside what may still become a secret: wait for more.
    Undecided,
}

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Masker {
        let mut values: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(String::into_bytes)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        let mut starts = [false; 256];
        for first in values
            .iter()
            .map(|v| v[0])
            .chain(TOKEN_PREFIXES.iter().map(|p| p.as_bytes()[0]))
        {
            starts[usize::from(first)] = true;
        }
        Masker { values, starts }
    }

    /// Masks a whole text, with nothing to follow it.
    pub fn mask(&self, text: &str) -> String {
        let mut out = Vec::with_capacity(text.len());
        MaskStream::default().feed(self, text.as_bytes(), true, &mut out);
        // Whole secrets are replaced by ASCII, so valid UTF-8 stays valid.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// What starts at `rest[0]`. `after_word` = the byte before continues a word (a token
    /// prefix counts only at a word's start); `last` = no input follows `rest`.
    fn find(&self, rest: &[u8], after_word: bool, last: bool) -> Found {
        for value in &self.values {
            if rest.starts_with(value) {
                return Found::Secret {
                    len: value.len(),
                    token: false,
                };
            }
            // Longest first: a longer secret still possible wins over a shorter one found.
            if !last && value.starts_with(rest) {
                return Found::Undecided;
            }
        }
        if !after_word {
            for prefix in TOKEN_PREFIXES.iter().map(|p| p.as_bytes()) {
                if rest.starts_with(prefix) {
                    return Found::Secret {
                        len: prefix.len(),
                        token: true,
                    };
                }
                if !last && prefix.starts_with(rest) {
                    return Found::Undecided;
                }
            }
        }
        Found::Nothing
    }
}

/// Masking of a stream that arrives in pieces. A piece may end anywhere — inside a secret, a
/// token word, a UTF-8 character — so the tail that may still begin a secret is held back
/// until the next piece (or the end) decides it; nothing else is ever held.
#[derive(Debug, Default)]
struct MaskStream {
    held: Vec<u8>,
    /// The last byte passed on continues a word.
    after_word: bool,
    /// Inside a token word already replaced by `[MASKED]`: the rest of the word is dropped.
    in_token: bool,
}

impl MaskStream {
    /// Masks `input` into `out`; `last` = the stream ends here (nothing is held back).
    fn feed(&mut self, masker: &Masker, input: &[u8], last: bool, out: &mut Vec<u8>) {
        let joined;
        let data: &[u8] = if self.held.is_empty() {
            input
        } else {
            let mut held = std::mem::take(&mut self.held);
            held.extend_from_slice(input);
            joined = held;
            &joined
        };
        // Everything before `copied` is in `out`; `mask_end` is where the last mask ended.
        let (mut pos, mut copied, mut mask_end) = (0, 0, None);
        let after_word = |pos: usize, mask_end: Option<usize>, carried: bool| {
            if mask_end == Some(pos) {
                false
            } else if pos > 0 {
                is_token_byte(data[pos - 1])
            } else {
                carried
            }
        };
        while pos < data.len() {
            if self.in_token {
                if is_token_byte(data[pos]) {
                    pos += 1;
                    copied = pos;
                    mask_end = Some(pos);
                    continue;
                }
                self.in_token = false;
            }
            if !masker.starts[usize::from(data[pos])] {
                pos += 1;
                continue;
            }
            let word = after_word(pos, mask_end, self.after_word);
            match masker.find(&data[pos..], word, last) {
                Found::Nothing => pos += 1,
                Found::Secret { len, token } => {
                    out.extend_from_slice(&data[copied..pos]);
                    out.extend_from_slice(MASK.as_bytes());
                    pos += len;
                    copied = pos;
                    mask_end = Some(pos);
                    self.in_token = token;
                }
                Found::Undecided => break,
            }
        }
        out.extend_from_slice(&data[copied..pos]);
        self.after_word = after_word(pos, mask_end, self.after_word);
        self.held = data[pos..].to_vec();
        if last {
            self.in_token = false;
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// The stored log: a temporary file, its length and running checksum.
struct TraceState {
    spool: SpooledTempFile,
    len: u64,
    checksum: crc32fast::Hasher,
    mask: MaskStream,
    /// The log reached its limit: the notice is written, nothing more is kept.
    full: bool,
}

impl std::fmt::Debug for TraceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceState")
            .field("len", &self.len)
            .field("full", &self.full)
            .finish_non_exhaustive()
    }
}

impl TraceState {
    /// Appends masked bytes, cut at `limit` with the official runner's notice.
    fn store(&mut self, bytes: &[u8], limit: u64) {
        if self.full || bytes.is_empty() {
            return;
        }
        let room = usize::try_from(limit.saturating_sub(self.len)).unwrap_or(usize::MAX);
        if bytes.len() <= room {
            self.append(bytes);
            return;
        }
        self.append(&bytes[..room]);
        self.append(
            format!(
                "\n{ESC}[33;1mJob's log exceeded limit of {limit} bytes.\n\
                 Job execution will continue but no more output will be collected.{ESC}[0;m\n"
            )
            .as_bytes(),
        );
        self.full = true;
    }

    fn append(&mut self, bytes: &[u8]) {
        // The spool's position stays at its end between calls (reads seek back).
        if let Err(e) = self.spool.write_all(bytes) {
            // A full disk: the log ends here rather than with a gap in the middle.
            tracing::warn!("storing the job log: {e}");
            self.full = true;
            return;
        }
        self.checksum.update(bytes);
        self.len += bytes.len() as u64;
    }

    fn read(&mut self, offset: u64, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        if offset >= self.len {
            return out;
        }
        let wanted = (self.len - offset).min(max as u64);
        out.reserve(usize::try_from(wanted).unwrap_or(0));
        let read = self
            .spool
            .seek(SeekFrom::Start(offset))
            .and_then(|_| (&mut self.spool).take(wanted).read_to_end(&mut out));
        let back = self.spool.seek(SeekFrom::End(0));
        if let Err(e) = read.and(back) {
            tracing::warn!("reading the job log: {e}");
        }
        out
    }
}

/// The log of one job. Cloning gives another handle to the same log.
#[derive(Debug, Clone)]
pub struct Trace {
    state: Arc<Mutex<TraceState>>,
    masker: Arc<Masker>,
    sections: bool,
    limit: u64,
    len_tx: Arc<watch::Sender<usize>>,
}

impl Trace {
    /// A new log; `sections` = the payload's `features.trace_sections`.
    pub fn new(masker: Masker, sections: bool) -> Trace {
        let (len_tx, _) = watch::channel(0);
        Trace {
            state: Arc::new(Mutex::new(TraceState {
                spool: SpooledTempFile::new(IN_MEMORY),
                len: 0,
                checksum: crc32fast::Hasher::new(),
                mask: MaskStream::default(),
                full: false,
            })),
            masker: Arc::new(masker),
            sections,
            limit: OUTPUT_LIMIT,
            len_tx: Arc::new(len_tx),
        }
    }

    /// The same log with another size limit than [`OUTPUT_LIMIT`].
    pub fn with_limit(mut self, limit: u64) -> Trace {
        self.limit = limit;
        self
    }

    /// Notified with the stored length whenever the log grows.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.len_tx.subscribe()
    }

    /// Everything stored so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().read(0, usize::MAX)
    }

    /// At most `max` bytes stored from `offset` on.
    pub fn bytes_from(&self, offset: usize, max: usize) -> Vec<u8> {
        self.lock().read(offset as u64, max)
    }

    pub fn len(&self) -> usize {
        usize::try_from(self.lock().len).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored log's CRC32 as the official runner reports it (`crc32:%08x`).
    pub fn checksum(&self) -> String {
        format!("crc32:{:08x}", self.lock().checksum.clone().finalize())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceState> {
        // A panic while holding the lock leaves a log that is still valid bytes: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, state: std::sync::MutexGuard<'_, TraceState>) {
        let len = usize::try_from(state.len).unwrap_or(usize::MAX);
        drop(state);
        self.len_tx.send_replace(len);
    }

    /// Masks `bytes` into the log; `last` = the job's output ends here for now.
    fn store_output(&self, state: &mut TraceState, bytes: &[u8], last: bool) {
        let mut masked = Vec::with_capacity(bytes.len() + MASK.len());
        state.mask.feed(&self.masker, bytes, last, &mut masked);
        state.store(&masked, self.limit);
    }

    /// Runner text, masked, with held-back job output flushed first so the order is kept.
    fn runner_text(&self, text: &str) {
        let mut state = self.lock();
        self.store_output(&mut state, &[], true);
        let masked = self.masker.mask(text);
        state.store(masked.as_bytes(), self.limit);
        self.publish(state);
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

    /// Job output, as it arrives in chunks: stored at once, masked, byte for byte — except a
    /// tail that may begin a secret, which waits for the next chunk (or a flush).
    pub fn output(&self, bytes: &[u8]) {
        let mut state = self.lock();
        self.store_output(&mut state, bytes, false);
        self.publish(state);
    }

    /// Stores any held-back output: the job's output stream ended.
    pub fn flush(&self) {
        let mut state = self.lock();
        self.store_output(&mut state, &[], true);
        self.publish(state);
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

    /// Output fed in the given pieces, then flushed.
    fn stored(masker: &Masker, pieces: &[&[u8]]) -> Vec<u8> {
        let trace = Trace::new(masker.clone(), false);
        for piece in pieces {
            trace.output(piece);
        }
        trace.flush();
        trace.bytes()
    }

    #[test]
    fn a_secret_cut_at_any_offset_of_any_boundary_is_masked() {
        let secret = "Sup3rS3cretValue42";
        let masker = Masker::new([secret.to_string(), "unused-other".to_string()]);
        let long_line = "x".repeat(65535);
        for before in ["", "a ", long_line.as_str()] {
            let (s, b) = (secret.as_bytes(), before.as_bytes());
            for i in 0..=s.len() {
                for j in i..=s.len() {
                    // Three chunks: the cuts fall at every pair of offsets in the secret.
                    let first = [b, &s[..i]].concat();
                    let with_newline =
                        stored(&masker, &[&first, &s[i..j], &[&s[j..], b"\n"].concat()]);
                    assert_eq!(
                        with_newline,
                        format!("{before}[MASKED]\n").as_bytes(),
                        "{i} {j}"
                    );
                    // The output ends inside the last chunk: the final flush decides.
                    let at_end = stored(&masker, &[&first, &s[i..j], &s[j..]]);
                    assert_eq!(at_end, format!("{before}[MASKED]").as_bytes(), "{i} {j}");
                }
            }
        }
    }

    #[test]
    fn a_runner_line_after_a_partial_secret_keeps_the_order() {
        let trace = Trace::new(Masker::new(["Sup3rS3cret".to_string()]), false);
        trace.output(b"half Sup3r");
        trace.info("done");
        let log = String::from_utf8(trace.bytes()).unwrap();
        assert_eq!(log, "half Sup3r\u{1b}[32;1mdone\u{1b}[0;m\n");
    }

    #[test]
    fn token_words_are_masked_across_chunks_but_not_inside_other_words() {
        let masker = Masker::new([]);
        let log = stored(
            &masker,
            &[b"a gl", b"cbt-64_ab", b"c.DEF rest x", b"glpat-no\n"],
        );
        assert_eq!(log, b"a [MASKED] rest xglpat-no\n");
    }

    #[test]
    fn output_is_stored_byte_for_byte_whatever_the_bytes() {
        let mut raw: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        raw.extend_from_slice(b"\xff\xfe invalid \xc3 utf-8 \xe2\x82");
        let pieces: Vec<&[u8]> = raw.chunks(4093).collect();
        let trace = Trace::new(Masker::new(["not-in-there".to_string()]), false);
        for piece in &pieces {
            trace.output(piece);
        }
        trace.flush();
        assert_eq!(trace.bytes(), raw);
        assert_eq!(
            trace.checksum(),
            format!("crc32:{:08x}", crc32fast::hash(&raw))
        );
    }

    #[test]
    fn a_long_log_is_read_back_in_slices_from_its_spool() {
        let trace = Trace::new(Masker::default(), false);
        let line: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        for _ in 0..1000 {
            trace.output(&line);
        }
        assert_eq!(trace.len(), 4_000_000);
        let slice = trace.bytes_from(3_999_000, 1 << 20);
        assert_eq!(slice, line[3000..]);
        assert_eq!(trace.bytes_from(8, 4), 2u32.to_le_bytes());
        assert!(trace.bytes_from(4_000_000, 10).is_empty());
    }

    #[test]
    fn a_log_past_its_limit_ends_with_the_runners_notice() {
        let trace = Trace::new(Masker::default(), false).with_limit(10);
        trace.output(b"0123456789abcdef\n");
        trace.info("Job succeeded");
        let log = String::from_utf8(trace.bytes()).unwrap();
        assert_eq!(
            log,
            "0123456789\n\u{1b}[33;1mJob's log exceeded limit of 10 bytes.\n\
             Job execution will continue but no more output will be collected.\u{1b}[0;m\n"
        );
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
