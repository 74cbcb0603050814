//! The person's page: `hush agent ui` serves it on 127.0.0.1 at a random
//! port, for the person at the laptop, in plain words: enrolled or not, and
//! to which collector; paused or not; the privacy terms in force and what
//! the last year's reports spent; what would be measured before any noise
//! (a preview, on request); every report that left, as a chart and a table;
//! and buttons to pause, resume and forget.
//!
//! It is its own short-lived process, not part of the running agent, so the
//! agent does no work for it while it is closed. It ends when the person
//! presses Close, when the page has not been shown for the idle time (the
//! open page reloads itself every [`REFRESH`], without a script, which is
//! the server's sign that it is still open), or on ctrl-c.
//!
//! Who may read it: whoever holds the one-time link printed at start (as
//! notebook servers do). Opening the link spends it and starts the one
//! session: a random path prefix the pages live under plus an HttpOnly,
//! SameSite=Strict cookie scoped to that path. Cookies are shared by every
//! port of 127.0.0.1, so the cookie alone would reach any other local
//! server the browser visits; scoped to the secret path, it is sent to none,
//! and a request needs both. Requests must name this server as their
//! `Host` (against DNS rebinding), every change is a POST carrying the
//! session's CSRF token (and no foreign `Origin`), and every answer carries
//! [`hush_web::SECURITY_HEADERS`]: no script, no framing, no caching.
//!
//! Only this user's processes may connect (on Linux the kernel's socket
//! table names each peer's owner: [`hush_web::http::same_user`]), so a link
//! another user reads from the opener's command line opens nothing. A
//! session lasts at most [`MAX_SESSION`] and runs at most
//! [`MAX_PREVIEWS`] previews, whose numbers are shown for
//! [`PREVIEW_KEPT`].
//!
//! Nothing it shows leaves the laptop, and it writes no file: the preview's
//! numbers come from a child process (see `preview.rs`); the page's copy
//! ([`Watched`]) is zeroed when dropped, while passing copies (the JSON read,
//! the HTML written) are freed without zeroing, in a process that dumps no
//! core.

mod page;
mod preview;

pub use preview::{Watched, WatchedLine};

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hush_web::http::{Admit, Handler, Request, Response};
use hush_web::same_secret;

use crate::outbox::{SentStatus, read_sent};
use crate::ranges::Ranges;
use crate::{AgentConfig, AgentError, AgentPaths, control};

/// How long the page may go unshown before the server ends.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// The preview lengths the page offers, in seconds.
pub const PREVIEW_SECONDS: [u64; 3] = [10, 30, 60];

/// The longest a session lasts, however busy: a page left open in a
/// background tab (or driven by something else in the browser) is not a
/// standing view of the person's activity.
pub const MAX_SESSION: Duration = Duration::from_secs(3600);

/// The most previews one session runs.
pub const MAX_PREVIEWS: u32 = 10;

/// How long a preview's numbers stay on the page.
pub const PREVIEW_KEPT: Duration = Duration::from_secs(300);

/// How long past its end a preview may take before the page gives up on it.
const PREVIEW_GRACE: Duration = Duration::from_secs(20);

const COOKIE: &str = "hush_ui";

/// Runs a preview of this many seconds and returns its numbers, or why it
/// could not: handed in by the binary, which runs `preview` as a child
/// process.
pub type Recorder = Arc<dyn Fn(Duration) -> Result<Watched, String> + Send + Sync>;

/// How the page behaves.
#[derive(Clone)]
pub struct UiOptions {
    /// How long the page may go unshown before the server ends (the open
    /// page reloads itself three times within it, so an open page never
    /// idles out).
    pub idle: Duration,
    /// Where the preview's numbers come from; `None` hides the preview.
    pub recorder: Option<Recorder>,
}

impl std::fmt::Debug for UiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiOptions")
            .field("idle", &self.idle)
            .field("recorder", &self.recorder.is_some())
            .finish()
    }
}

/// Why the page's server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The person pressed Close.
    Closed,
    /// The page went unshown for the idle time.
    Idle,
    /// The caller's stop flag was set (ctrl-c).
    Stopped,
    /// The session reached [`MAX_SESSION`].
    TimeUp,
}

/// The page's server, bound and ready to serve.
pub struct Ui {
    listener: TcpListener,
    link: String,
    state: Arc<State>,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The link is a secret: not in any debug output.
        f.debug_struct("Ui")
            .field("origin", &self.state.origin)
            .finish_non_exhaustive()
    }
}

/// What the page shows from the preview.
#[derive(Debug)]
enum Preview {
    Never,
    /// Preview number `id` of the session, due to end at `until`.
    Watching {
        until: Instant,
        id: u32,
    },
    Done {
        watched: Watched,
        at: Moment,
    },
    Failed(String),
}

impl Preview {
    /// Whether a preview is under way (one that overran its end by
    /// [`PREVIEW_GRACE`] has failed, even if its thread never said so).
    fn watching(&self) -> bool {
        matches!(self, Preview::Watching { until, .. } if Instant::now() < *until + PREVIEW_GRACE)
    }
}

/// A point in time, on both clocks: the monotonic clock stops while the
/// laptop sleeps, and the wall clock may be set back, so a span is the
/// longer of the two. A page left open overnight has been open all night.
#[derive(Debug, Clone, Copy)]
struct Moment {
    mono: Instant,
    wall: SystemTime,
}

impl Moment {
    fn now() -> Moment {
        Moment {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.mono
            .elapsed()
            .max(self.wall.elapsed().unwrap_or_default())
    }
}

#[derive(Debug, Clone)]
struct Session {
    /// The secret path prefix the pages live under, `/s/<hex>`.
    base: String,
    cookie: String,
    csrf: String,
    started: Moment,
}

struct State {
    paths: AgentPaths,
    config: AgentConfig,
    /// `127.0.0.1:PORT`, the only `Host` answered.
    host: String,
    /// `http://127.0.0.1:PORT`, the only `Origin` a change may come from.
    origin: String,
    /// The one-time link's secret until it is used.
    once: Mutex<Option<String>>,
    session: Mutex<Option<Session>>,
    seen: Mutex<Moment>,
    idle: Duration,
    closed: AtomicBool,
    notice: Mutex<Option<String>>,
    preview: Mutex<Preview>,
    previews: Mutex<u32>,
    recorder: Option<Recorder>,
    /// Held while a change is carried out, so two (a double click) never
    /// race each other.
    acting: Mutex<()>,
}

/// A lock whose holder panicked still guards plain data: take it anyway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn touch(&self) {
        *lock(&self.seen) = Moment::now();
    }

    fn idle_out(&self) -> bool {
        // A change under way (a forget waits up to 15 s for the agent) is activity.
        let busy = matches!(
            self.acting.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        );
        !busy && !lock(&self.preview).watching() && lock(&self.seen).elapsed() >= self.idle
    }

    fn time_up(&self) -> bool {
        lock(&self.session)
            .as_ref()
            .is_some_and(|s| s.started.elapsed() >= MAX_SESSION)
    }

    fn say(&self, notice: impl Into<String>) {
        *lock(&self.notice) = Some(notice.into());
    }
}

impl Ui {
    /// Binds 127.0.0.1 at a port the system picks and makes the one-time link.
    pub fn bind(
        paths: AgentPaths,
        config: AgentConfig,
        options: UiOptions,
    ) -> Result<Ui, AgentError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let host = format!("127.0.0.1:{port}");
        let once = random()?;
        let link = format!("http://{host}/open?secret={once}");
        let state = Arc::new(State {
            paths,
            config,
            origin: format!("http://{host}"),
            host,
            once: Mutex::new(Some(once)),
            session: Mutex::new(None),
            seen: Mutex::new(Moment::now()),
            idle: options.idle,
            closed: AtomicBool::new(false),
            notice: Mutex::new(None),
            preview: Mutex::new(Preview::Never),
            previews: Mutex::new(0),
            recorder: options.recorder,
            acting: Mutex::new(()),
        });
        Ok(Ui {
            listener,
            link,
            state,
        })
    }

    /// The one-time link that opens the page (a secret: show it only to the person).
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Serves until the person closes the page, it idles out, or `stop` is set.
    pub fn serve(self, stop: &AtomicBool) -> Result<Ended, AgentError> {
        let state = Arc::clone(&self.state);
        let handler: Handler = Arc::new(move |r: &Request| handle(&state, r));
        let admit: Admit = Arc::new(hush_web::http::same_user);
        let running = || {
            !stop.load(Ordering::SeqCst)
                && !self.state.closed.load(Ordering::SeqCst)
                && !self.state.idle_out()
                && !self.state.time_up()
        };
        let served = hush_web::http::serve(&self.listener, handler, admit, &running);
        // A change under way finishes before the process may end.
        drop(lock(&self.state.acting));
        served?;
        Ok(if self.state.closed.load(Ordering::SeqCst) {
            Ended::Closed
        } else if stop.load(Ordering::SeqCst) {
            Ended::Stopped
        } else if self.state.time_up() {
            Ended::TimeUp
        } else {
            Ended::Idle
        })
    }
}

fn random() -> Result<String, AgentError> {
    hush_web::secret().map_err(|e| AgentError::Config(e.to_string()))
}

fn forbidden(why: &str) -> Response {
    Response::html(403, page::message("Hush on this laptop", why, None))
}

const TIME_UP: &str = "This page has been open for an hour, the longest it stays open. Run `hush agent ui` again for a new link.";

const NEEDS_LINK: &str = "This page opens only from the one-time link that `hush agent ui` printed, in the browser that opened it first. Run `hush agent ui` again for a new link.";

fn handle(state: &Arc<State>, req: &Request) -> Response {
    // A web page elsewhere can point a name of its own at 127.0.0.1 (DNS
    // rebinding); its requests then carry that name, and are refused.
    if req.header("host") != Some(state.host.as_str()) {
        return Response::html(
            421,
            page::message(
                "Hush on this laptop",
                &format!("This page answers only at http://{}.", state.host),
                None,
            ),
        );
    }
    if (req.method.as_str(), req.path.as_str()) == ("GET", "/open") {
        return open(state, req);
    }
    let Some(session) = lock(&state.session).clone() else {
        return forbidden(NEEDS_LINK);
    };
    // Both secrets, each compared in time independent of where it differs.
    let n = session.base.len();
    let in_session = req
        .path
        .get(..n)
        .is_some_and(|prefix| same_secret(prefix, &session.base))
        && req.path[n..].starts_with('/');
    let cookie_ok = req
        .cookie(COOKIE)
        .is_some_and(|c| same_secret(c, &session.cookie));
    if !(in_session && cookie_ok) {
        return forbidden(NEEDS_LINK);
    }
    if session.started.elapsed() >= MAX_SESSION {
        return forbidden(TIME_UP);
    }
    let rest = &req.path[n..];
    state.touch();
    match (req.method.as_str(), rest) {
        ("GET", "/") => main_page(state, &session),
        ("GET", "/style.css") => Response::new(200, "text/css; charset=utf-8", page::STYLE),
        ("GET", "/forget") => Response::html(
            200,
            page::confirm_forget(&session.base, &session.csrf, state.idle),
        ),
        ("POST", action) => {
            let foreign = req.header("origin").is_some_and(|o| o != state.origin);
            let token = req.form("csrf").unwrap_or_default();
            if foreign || !same_secret(&token, &session.csrf) {
                return forbidden(
                    "This form came from another page or an old one; nothing was done. Reload the page and try again.",
                );
            }
            post(state, &session, action, req)
        }
        ("GET", _) => Response::html(
            404,
            page::message("Not found", "There is no such page.", Some(&session.base)),
        ),
        _ => Response::html(
            405,
            page::message(
                "Not allowed",
                "Pages are read with GET and changed with the page's buttons.",
                Some(&session.base),
            ),
        ),
    }
}

/// The one-time link: spends it and starts the session.
fn open(state: &State, req: &Request) -> Response {
    let given = req.query("secret").unwrap_or_default();
    let mut once = lock(&state.once);
    if !once.as_deref().is_some_and(|s| same_secret(s, &given)) {
        return forbidden(
            "This link was already used or is not the one `hush agent ui` printed. Run `hush agent ui` again for a new link.",
        );
    }
    let session = match (random(), random(), random()) {
        (Ok(path), Ok(cookie), Ok(csrf)) => Session {
            base: format!("/s/{}", &path[..32]),
            cookie,
            csrf,
            started: Moment::now(),
        },
        _ => {
            return Response::html(
                500,
                page::message(
                    "Hush on this laptop",
                    "The system gave no randomness for a session; try again.",
                    None,
                ),
            );
        }
    };
    *once = None;
    *lock(&state.session) = Some(session.clone());
    state.touch();
    Response::redirect(&format!("{}/", session.base)).with_header(
        "set-cookie",
        &format!(
            "{COOKIE}={}; Path={}; HttpOnly; SameSite=Strict",
            session.cookie, session.base
        ),
    )
}

fn post(state: &Arc<State>, session: &Session, action: &str, req: &Request) -> Response {
    let _one_at_a_time = lock(&state.acting);
    let home = format!("{}/", session.base);
    let done = |result: Result<String, AgentError>| {
        state.say(match result {
            Ok(notice) => notice,
            Err(e) => format!("That did not work: {e}"),
        });
        Response::redirect(&home)
    };
    match action {
        "/pause" => done(control::pause(&state.paths).map(|()| {
            "Paused: nothing is measured until you resume.".to_owned()
        })),
        "/resume" => done(control::resume(&state.paths).map(|()| "Measuring again.".to_owned())),
        "/forget" => done(
            control::forget(&state.paths, Duration::from_secs(15)).map(|_| {
                "Forgotten: the device secret and the queued reports are deleted. What the last year's reports spent stays counted, so forgetting cannot reset what a year reveals.".to_owned()
            }),
        ),
        "/preview" => {
            let seconds = req
                .form("seconds")
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| PREVIEW_SECONDS.contains(s));
            match seconds {
                Some(s) => {
                    start_preview(state, s);
                    // No `#preview`: a page at a fragment URL reloads itself
                    // (its meta refresh) as a jump to the fragment, not a load.
                    Response::redirect(&home)
                }
                None => Response::html(400, page::message("Hush on this laptop", "Choose one of the offered preview lengths.", Some(&session.base))),
            }
        }
        "/close" => {
            state.closed.store(true, Ordering::SeqCst);
            // The numbers are zeroed now, not when the process ends.
            *lock(&state.preview) = Preview::Never;
            Response::html(200, page::message("Hush on this laptop", "This page is closed and its server has stopped; nothing it showed was kept. Run `hush agent ui` to open it again.", None))
        }
        _ => Response::html(404, page::message("Not found", "There is no such button.", Some(&session.base))),
    }
}

fn start_preview(state: &Arc<State>, seconds: u64) {
    let Some(recorder) = state.recorder.clone() else {
        state
            .say("The preview needs this laptop's display, and this page was started without one.");
        return;
    };
    let id = {
        let mut preview = lock(&state.preview);
        if preview.watching() {
            return;
        }
        let mut previews = lock(&state.previews);
        if *previews >= MAX_PREVIEWS {
            state.say(format!(
                "This page has run its {MAX_PREVIEWS} previews. Run `hush agent ui` again for more."
            ));
            return;
        }
        *previews += 1;
        *preview = Preview::Watching {
            until: Instant::now() + Duration::from_secs(seconds),
            id: *previews,
        };
        *previews
    };
    let worker = Arc::clone(state);
    let spawned = thread::Builder::new()
        .name("hush-ui-preview".into())
        .spawn(move || {
            let next = match recorder(Duration::from_secs(seconds)) {
                Ok(watched) => Preview::Done {
                    watched,
                    at: Moment::now(),
                },
                Err(e) => Preview::Failed(e),
            };
            // Only into its own slot: a preview given up on (past its grace)
            // and replaced must not overwrite the next one.
            let mut slot = lock(&worker.preview);
            if matches!(*slot, Preview::Watching { id: current, .. } if current == id) {
                *slot = next;
            }
            drop(slot);
            worker.touch();
        });
    if let Err(e) = spawned {
        *lock(&state.preview) = Preview::Failed(format!("could not start watching: {e}"));
    }
}

fn main_page(state: &State, session: &Session) -> Response {
    let gathered = (|| -> Result<_, AgentError> {
        let status = control::status(&state.paths, &state.config)?;
        let running = crate::lock::held(&state.paths)?;
        let ranges = Ranges::load(&state.paths)?;
        let reports = read_sent(&state.paths)?
            .into_iter()
            .map(|e| page::SentReport {
                at: e.at,
                sent: e.status == SentStatus::Sent,
                period: e.report.period(),
                bytes: e.report.encode().len(),
                lines: ranges.describe(&e.report),
            })
            .collect::<Vec<_>>();
        Ok((status, running, reports))
    })();
    let (status, running, reports) = match gathered {
        Ok(g) => g,
        Err(e) => {
            return Response::html(
                500,
                page::message(
                    "Hush on this laptop",
                    &format!("The agent's files could not be read: {e}"),
                    Some(&session.base),
                ),
            );
        }
    };
    let notice = lock(&state.notice).take();
    let mut preview = lock(&state.preview);
    if matches!(&*preview, Preview::Done { at, .. } if at.elapsed() >= PREVIEW_KEPT) {
        *preview = Preview::Never;
    }
    if matches!(&*preview, Preview::Watching { .. }) && !preview.watching() {
        *preview = Preview::Failed("it did not finish in time".to_owned());
    }
    let view = page::View {
        base: &session.base,
        csrf: &session.csrf,
        status: &status,
        running,
        reports: &reports,
        notice: notice.as_deref(),
        preview: &preview,
        can_preview: state.recorder.is_some(),
        idle: state.idle,
        now: crate::daemon::unix_now(),
    };
    Response::html(200, page::main(&view))
}

#[cfg(test)]
mod tests;
