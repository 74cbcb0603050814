//! `hush agent ui`: serves the person's page (`hush_agent::ui`) and opens it
//! in the default browser. Its preview runs this same binary's `preview
//! --json` as a child process, so the page's own process never listens to
//! the keyboard: the listener ends with the child.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hush_agent::AgentConfig;
use hush_agent::ui::{Ended, Recorder, Ui, UiOptions, Watched};
use zeroize::Zeroize;

use super::args::UiArgs;

/// The preview child running now, if any, so that it never outlives the page.
type Running = Arc<Mutex<Option<Child>>>;

/// Serves the page until it is closed, idles out, or ctrl-c.
pub fn run(args: &UiArgs, prefix: &'static [&'static str]) -> anyhow::Result<ExitCode> {
    // The page holds the person's preview numbers: no core file may keep them.
    hush_agent::hardening::disable_core_dumps()?;
    let paths = super::paths(&args.home)?;
    let config = AgentConfig::load(&paths.config)?;
    let running: Running = Arc::default();
    let recorder: Recorder = {
        let (running, home) = (Arc::clone(&running), args.home.home.clone());
        Arc::new(move |d| preview_in_child(prefix, home.as_deref(), d, &running))
    };
    let ui = Ui::bind(
        paths,
        config,
        UiOptions {
            idle: Duration::from_secs(args.idle_seconds),
            recorder: Some(recorder),
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signals(Arc::clone(&stop))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Hush's page for you, at a one-time link (it opens once, in one browser, for your user only):"
    )?;
    writeln!(out, "  {}", ui.link())?;
    writeln!(
        out,
        "It stops {} s after it was last shown, an hour after it was opened, when you press Close on it, or on ctrl-c.",
        args.idle_seconds
    )?;
    out.flush()?;
    drop(out);
    if !args.no_browser && !open_browser(ui.link()) {
        eprintln!("no browser could be started: open the link above in yours");
    }
    let ended = ui.serve(&stop);
    // A preview under way ends with the page, not a minute later.
    if let Some(mut child) = running.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let said = match ended? {
        Ended::Closed => "closed from the page",
        Ended::Idle => "stopped: the page was not shown for a while",
        Ended::Stopped => "stopped",
        Ended::TimeUp => "stopped: the page was open for an hour",
    };
    // The person may have closed the terminal; the page is done either way.
    let _ = writeln!(std::io::stdout(), "{said}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `preview --json --seconds N` of this binary as a child process and
/// reads what it printed.
fn preview_in_child(
    prefix: &[&str],
    home: Option<&Path>,
    duration: Duration,
    running: &Running,
) -> Result<Watched, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut command = Command::new(&exe);
    command
        .args(prefix)
        .args(["preview", "--json", "--seconds"])
        .arg(duration.as_secs().to_string());
    if let Some(home) = home {
        command.arg("--home").arg(home);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the preview: {e}"))?;
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    *running.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    let deadline = Instant::now() + duration + Duration::from_secs(10);
    let status = loop {
        let mut slot = running.lock().unwrap_or_else(|p| p.into_inner());
        let Some(child) = slot.as_mut() else {
            return Err("the page is closing".to_owned());
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                *slot = None;
                break status;
            }
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                *slot = None;
                return Err("it did not finish in time".to_owned());
            }
            Err(e) => return Err(format!("lost the preview: {e}")),
        }
        drop(slot);
        std::thread::sleep(Duration::from_millis(100));
    };
    // Room for all of it at once, so no copy is left behind by growing.
    let (mut out, mut err) = (String::with_capacity(64 * 1024), String::new());
    if let Some(s) = stdout.as_mut() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(s) = stderr.as_mut() {
        let _ = s.read_to_string(&mut err);
    }
    let result = if status.success() {
        Watched::from_preview_json(&out)
    } else {
        // The last line is the error the preview reported (no display, no permission).
        let why = err.lines().rev().find(|l| !l.trim().is_empty());
        Err(why
            .unwrap_or("it failed")
            .trim_start_matches("error: ")
            .to_owned())
    };
    out.zeroize();
    err.zeroize();
    result
}

/// Asks the desktop to open `link` in the default browser; false when no
/// opener could be started. The opener runs detached; whether the browser
/// then shows the page is the person's to see.
fn open_browser(link: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(unix) {
        "xdg-open"
    } else {
        return false;
    };
    let spawned = Command::new(opener)
        .arg(link)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the opener");
    match spawned {
        Ok(mut child) => {
            // Reaped on its own thread, so it leaves no zombie behind; if no
            // thread can be had, the zombie goes when this process ends.
            let _ = std::thread::Builder::new().spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}
