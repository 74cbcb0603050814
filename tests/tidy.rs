//! Architecture checks that the compiler cannot make: layering, no IO in the core
//! crates, and a `//!` header on every source file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The core crates compute; they never touch files, sockets, clocks or ambient randomness.
const CORE_CRATES: &[&str] = &["ldp", "stats", "report"];

const FORBIDDEN_IN_CORE: &[&str] = &[
    "std::fs",
    "std::net",
    "SystemTime",
    "Instant::now",
    "SysRng",
    "OsRng",
    "thread_rng",
    "rand::rng(",
    "std::env",
    "println!",
    "eprintln!",
];

#[test]
fn core_crates_do_no_io() {
    for krate in CORE_CRATES {
        let mut files = Vec::new();
        rust_files(&root().join("crates").join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "no sources found for {krate}");
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for needle in FORBIDDEN_IN_CORE {
                assert!(
                    !text.contains(needle),
                    "{} uses {needle}: core crates take time and randomness as arguments",
                    file.display()
                );
            }
        }
    }
}

/// Internal dependencies point one way, as DESIGN.md draws them: the core
/// crates depend only on what is below them, the collector never links capture,
/// and nothing depends on the agent or the collector.
#[test]
fn dependencies_point_one_way() {
    let allowed: &[(&str, &[&str])] = &[
        ("ldp", &[]),
        ("stats", &["ldp"]),
        ("report", &["ldp"]),
        ("capture", &["report"]),
        ("agent", &["ldp", "report", "capture", "web"]),
        ("collector", &["ldp", "stats", "report", "web"]),
        ("web", &[]),
    ];
    let mut dirs: Vec<String> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut named: Vec<String> = allowed.iter().map(|(k, _)| (*k).to_owned()).collect();
    named.sort();
    assert_eq!(dirs, named, "every crate needs a row in this table");
    for (krate, deps) in allowed {
        let text =
            fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
        let mut internal: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("hush-"))
            .map(|rest| rest.split(['.', ' ', '=']).next().unwrap_or("").to_owned())
            .collect();
        internal.sort();
        let mut want: Vec<String> = deps.iter().map(|d| (*d).to_owned()).collect();
        want.sort();
        assert_eq!(
            internal, want,
            "hush-{krate} depends on {internal:?}; allowed: {want:?}"
        );
    }
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests", "examples", "benches"] {
        rust_files(&root().join(dir), &mut files);
    }
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(
            first.starts_with("//!"),
            "{} must open with a //! line",
            file.display()
        );
    }
}

/// The only files allowed to lift the workspace's `unsafe_code = "deny"`, each
/// for one audited reason: the log-writing SQLite VFS of the collector's
/// log (collector) and the AVX2 dispatch of the batch kernels (ldp).
const UNSAFE_ALLOWED: &[&str] = &[
    "crates/collector/src/store/sqlite/coalesce.rs",
    "crates/collector/src/store/sqlite/pcache.rs",
    "crates/ldp/src/batch/dispatch.rs",
];

#[test]
fn unsafe_code_lives_only_in_the_audited_files() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("src"), &mut files);
    let mut seen = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let relative = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if text.contains("allow(unsafe_code)") {
            assert!(
                UNSAFE_ALLOWED.contains(&relative.as_str()),
                "{relative} allows unsafe code; only {UNSAFE_ALLOWED:?} may"
            );
            seen.push(relative);
        }
    }
    seen.sort();
    assert_eq!(
        seen, UNSAFE_ALLOWED,
        "an audited file no longer needs its allowance"
    );
}

/// The README's first command is `cargo run --release -- demo`; with two
/// binaries in the root package (`hush` and `hush-agent`), `cargo run` only
/// knows which to run because the manifest names a default.
#[test]
fn cargo_run_means_the_hush_binary() {
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(
        manifest
            .lines()
            .any(|l| l.trim() == "default-run = \"hush\""),
        "the root package must set default-run = \"hush\""
    );
}

/// On Linux the binaries link no system library beyond libc (the README's
/// commands work with only a Rust toolchain): no crate that links the C X11
/// libraries is in the build, and `ldd` finds none in what was built.
#[cfg(target_os = "linux")]
#[test]
fn linux_builds_link_no_x11_library() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--workspace",
            "-e",
            "normal,build",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    for line in tree.lines() {
        let name = line.split(' ').next().unwrap_or("");
        assert!(
            !["x11", "x11-dl", "xcb", "rdev", "openssl-sys"].contains(&name),
            "the Linux build pulls {line}, which links a system library"
        );
    }
    for binary in [env!("CARGO_BIN_EXE_hush"), env!("CARGO_BIN_EXE_hush-agent")] {
        // ldd comes with glibc (Debian's essential libc-bin), so every Linux machine has it.
        let out = std::process::Command::new("ldd")
            .arg(binary)
            .output()
            .expect("ldd runs");
        let libs = String::from_utf8_lossy(&out.stdout);
        for lib in ["libX11", "libXtst", "libXi", "libxcb"] {
            assert!(!libs.contains(lib), "{binary} links {lib}:\n{libs}");
        }
    }
}

/// The service files start the agent with no core dumps and private files,
/// and the launchd agent logs under the person's own Library, not /tmp.
#[test]
fn service_files_turn_core_dumps_off_and_keep_logs_private() {
    let unit = fs::read_to_string(root().join("packaging/systemd/hush-agent.service")).unwrap();
    assert!(unit.lines().any(|l| l.trim() == "LimitCORE=0"), "{unit}");
    assert!(unit.lines().any(|l| l.trim() == "UMask=0077"), "{unit}");
    let plist = fs::read_to_string(root().join("packaging/launchd/org.hush.agent.plist")).unwrap();
    assert!(
        plist.contains("<key>Core</key>\n        <integer>0</integer>"),
        "{plist}"
    );
    assert!(plist.contains("Library/Logs/Hush/agent.log"), "{plist}");
    assert!(!plist.contains("/tmp/"), "{plist}");
}

/// The collector's unit counts as started only once `/readyz` says so, runs
/// as its own user with a private state directory, and dumps no core.
#[test]
fn the_collector_unit_waits_for_readiness() {
    let unit = fs::read_to_string(root().join("packaging/systemd/hush-collector.service")).unwrap();
    let line = |key: &str| {
        unit.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {unit}"))
            .to_owned()
    };
    assert!(line("ExecStart=").contains("hush collector serve --config"));
    let ready = line("ExecStartPost=");
    assert!(
        ready.contains("hush collector ready --url http://"),
        "{ready}"
    );
    // It asks the `metrics_listen` address the install steps set, a valid one.
    let address = "127.0.0.1:9600";
    assert!(ready.contains(&format!("http://{address} ")), "{ready}");
    assert!(
        unit.contains(&format!("metrics_listen = \"{address}\"")),
        "{unit}"
    );
    hush_collector::CollectorConfig {
        metrics_listen: Some(address.parse().unwrap()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    for setting in [
        "User=hush-collector",
        "StateDirectoryMode=0700",
        "LimitCORE=0",
        "UMask=0077",
    ] {
        assert!(unit.lines().any(|l| l.trim() == setting), "{setting}");
    }
}
