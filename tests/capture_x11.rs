//! Capture against a real X server: Xvfb with the RECORD extension, driven by xdotool.
//!
//! The capture runs in its own process (`hush agent preview`, one listener per
//! process); this test types, clicks, scrolls and moves, then checks the
//! exact counts per class and that the typed secret appears nowhere in what the
//! capture process printed. The tests that need Xvfb and xdotool are ignored
//! on a bare machine (`cargo test --workspace` says how many); `.ci/run`
//! installs both and runs them with `--include-ignored`, where a missing
//! program fails the test rather than letting it pretend to pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::Xvfb;

const SECRET: &str = "swordfish42";

#[test]
#[ignore = "needs Xvfb and xdotool (installed by .ci/run)"]
fn preview_counts_real_input_exactly_and_leaks_no_secret() {
    let x = Xvfb::start();
    let mut preview = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["agent", "preview", "--seconds", "5", "--json"])
        .env("DISPLAY", &x.display)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the listener is up before making any input.
    let mut stderr = BufReader::new(preview.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(
        first.contains("listening"),
        "preview did not start: {first}"
    );

    x.xdotool(&["type", "--delay", "0", "hello world"]);
    x.xdotool(&["type", "--delay", "0", SECRET]);
    x.xdotool(&[
        "key",
        "ctrl+c",
        "ctrl+v",
        "ctrl+z",
        "BackSpace",
        "BackSpace",
        "alt+Tab",
        "ctrl+q",
    ]);
    x.xdotool(&[
        "click", "1", "click", "3", "click", "1", "click", "4", "click", "5", "click", "5",
        "click", "6",
    ]);
    x.xdotool(&["mousemove", "100", "100"]);
    std::thread::sleep(Duration::from_millis(100));
    x.xdotool(&["mousemove", "400", "500"]);

    let mut out = String::new();
    preview
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = preview.wait().unwrap();
    assert!(status.success(), "preview failed: {first}{rest}");

    // The secret, and the secret's letters in order, appear in nothing the capture process printed.
    for text in [&out, &first, &rest] {
        assert!(
            !text.contains(SECRET) && !text.contains("swordfish"),
            "secret leaked: {text}"
        );
    }

    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["counts"];
    let keys = &c["keys"];
    // "hello world" + "swordfish42": 19 letters, 2 digits, 1 space.
    assert_eq!(keys["letter"], 19, "{c}");
    assert_eq!(keys["digit"], 2, "{c}");
    assert_eq!(keys["whitespace"], 1, "{c}");
    assert_eq!(keys["edit"], 2, "{c}");
    // Four Ctrl releases and one Alt release.
    assert_eq!(keys["modifier"], 5, "{c}");
    assert_eq!(keys["navigation"], 0, "{c}");
    // ctrl+c, ctrl+v, ctrl+z, alt+Tab are listed; ctrl+q is an anonymous chord.
    assert_eq!(c["chords"], 5, "{c}");
    for s in ["copy", "paste", "undo", "switch-window"] {
        assert_eq!(c["shortcuts"][s], 1, "{s}: {c}");
    }
    assert_eq!(c["keystrokes"], 19 + 2 + 1 + 2 + 5 + 5, "{c}");
    assert_eq!(c["clicks"]["left"], 2, "{c}");
    assert_eq!(c["clicks"]["right"], 1, "{c}");
    assert_eq!(c["clicks"]["middle"], 0, "{c}");
    // Buttons 4, 5, 5 (vertical) and 6 (horizontal, whose spurious release is ignored).
    assert_eq!(c["scroll_notches"], 4, "{c}");
    // The first move only fixes the position; (100,100) -> (400,500) is 500 px.
    assert_eq!(c["pointer_travel_px"], 500, "{c}");
    assert_eq!(c["active_minutes"], 1, "{c}");
    assert_eq!(v["dropped"], 0);
}

#[test]
fn preview_without_a_display_says_how_to_fix_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["agent", "preview", "--seconds", "1"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DISPLAY is not set") && err.contains("Xvfb"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["agent", "preview", "--seconds", "1"])
        .env_remove("DISPLAY")
        .env("WAYLAND_DISPLAY", "wayland-0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Wayland") && err.contains("XWayland"), "{err}");
}

/// If the X server dies under the listener, the agent reports it instead of
/// being exited by Xlib's default handler.
#[test]
#[ignore = "needs Xvfb and xdotool (installed by .ci/run)"]
fn a_dying_x_server_is_reported_not_fatal() {
    let mut x = Xvfb::start();
    let preview = Command::new(env!("CARGO_BIN_EXE_hush"))
        .args(["agent", "preview", "--seconds", "4"])
        .env("DISPLAY", &x.display)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    x.kill();
    let out = preview.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connection to the X display was lost"),
        "status {:?}: {err}",
        out.status
    );
    assert_eq!(out.status.code(), Some(1));
}
