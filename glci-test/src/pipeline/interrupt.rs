//! The signals that stop a run: Ctrl-C (SIGINT), SIGTERM (`timeout`, a CI system's cancel,
//! `docker stop`, a service manager) and SIGHUP (the terminal was closed). Each cancels the
//! run the same way — running jobs stop their script, `after_script` runs, everything is
//! removed — and a second one of any kind aborts. Without handlers SIGTERM and SIGHUP
//! would end the process on the spot and leave its containers running.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// One of the signals [`Interrupts`] listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    /// The exit status a shell gives a command this signal ended: 128 + the signal number
    /// (130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP).
    pub fn exit_code(self) -> u8 {
        128 + match self {
            Interrupt::Hup => 1,
            Interrupt::Int => 2,
            Interrupt::Term => 15,
        }
    }

    /// What to call it in a message.
    pub fn describe(self) -> &'static str {
        match self {
            Interrupt::Int => "Ctrl-C",
            Interrupt::Term => "SIGTERM",
            Interrupt::Hup => "SIGHUP",
        }
    }
}

/// Listens for SIGINT, SIGTERM and SIGHUP. From its creation on, these no longer end the
/// process: one arriving before [`Interrupts::next`] is asked is kept for it.
pub struct Interrupts {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Interrupts {
    /// Must be called inside a tokio runtime.
    pub fn new() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal (never returns if none comes).
    pub async fn next(&mut self) -> Interrupt {
        loop {
            let got = tokio::select! {
                r = self.int.recv() => r.map(|()| Interrupt::Int),
                r = self.term.recv() => r.map(|()| Interrupt::Term),
                r = self.hup.recv() => r.map(|()| Interrupt::Hup),
            };
            if let Some(interrupt) = got {
                return interrupt;
            }
            // A stream ended (the runtime is shutting down): nothing more will come.
            std::future::pending::<()>().await;
        }
    }
}
