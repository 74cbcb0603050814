//! `hush agent ui`: serves the person's page (`hush_agent::ui`) and opens it
//! in the default browser. The page's preview records from the real
//! keyboard and mouse, which only the binaries link.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hush_agent::AgentConfig;
use hush_agent::ui::{Ended, Recorder, Ui, UiOptions};
use hush_capture::{Epoch, OsSource, record_for};

use super::args::UiArgs;

/// Serves the page until it is closed, idles out, or ctrl-c.
pub fn run(args: &UiArgs) -> anyhow::Result<ExitCode> {
    let paths = super::paths(&args.home)?;
    let config = AgentConfig::load(&paths.config)?;
    let recorder: Recorder = Arc::new(|duration| {
        let epoch = Epoch::now();
        record_for(OsSource::new(epoch), epoch, duration, || {})
    });
    let idle = Duration::from_secs(args.idle_seconds);
    let ui = Ui::bind(
        paths,
        config,
        UiOptions {
            idle,
            recorder: Some(recorder),
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    super::stop_on_signals(Arc::clone(&stop))?;
    println!("Hush's page for you, at a one-time link (it opens once, in one browser):");
    println!("  {}", ui.link());
    println!(
        "It stops {} s after it was last shown, when you press Close on it, or on ctrl-c.",
        args.idle_seconds
    );
    std::io::stdout().flush()?;
    if !args.no_browser && !open_browser(ui.link()) {
        eprintln!("no browser could be started: open the link above in yours");
    }
    let ended = ui.serve(&stop)?;
    println!(
        "{}",
        match ended {
            Ended::Closed => "closed from the page",
            Ended::Idle => "stopped: the page was not shown for a while",
            Ended::Stopped => "stopped",
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks the desktop to open `link` in the default browser; false when no
/// opener could be started. The opener runs detached; whether the browser
/// then shows the page is the person's to see.
fn open_browser(link: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match Command::new(opener)
        .arg(link)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reaped on its own thread, so it leaves no zombie behind.
            std::thread::spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}
