//! Synthetic people for simulations and the demo: realistic, heterogeneous
//! interaction streams, day by day.
//!
//! Typing parameters come from Dhakal, Feit, Kristensson, Oulasvirta,
//! "Observations on Typing from 136 Million Keystrokes", CHI 2018 (168,000
//! typists): speed 51.56 words per minute on average (SD 20.20), 1.17
//! keystrokes per character (SD about 0.10), each correction costing a
//! Backspace and a retyped key. Pointer, scroll, shortcut and active-time
//! parameters are stated assumptions (no comparably large public study), chosen
//! to give plausible office days: 2 to 8 active hours, about one click and a few
//! scroll notches per active minute, copy and paste the most used shortcuts.

use hush_report::{KeyClass, MouseButton, Shortcut};
use rand::Rng;

use crate::{Interaction, InteractionKind};

/// Mean typing speed, words per minute (Dhakal et al. 2018).
pub const TYPING_WPM_MEAN: f64 = 51.56;
/// Standard deviation of typing speed (Dhakal et al. 2018).
pub const TYPING_WPM_SD: f64 = 20.20;
/// Mean keystrokes per character (Dhakal et al. 2018).
pub const KSPC_MEAN: f64 = 1.17;
/// Spread of keystrokes per character across typists (Dhakal et al. 2018).
pub const KSPC_SD: f64 = 0.10;
/// Characters per word in words-per-minute measures (the typing-test convention).
pub const CHARS_PER_WORD: f64 = 5.0;

const MINUTE_MS: u64 = 60_000;

/// Relative use of the allow-listed shortcuts (an assumption: copy and paste
/// dominate, then undo, switching windows and save).
const SHORTCUT_WEIGHTS: [f64; 14] = [
    30.0, 6.0, 28.0, 10.0, 2.0, 6.0, 4.0, 3.0, 8.0, 3.0, 3.0, 2.0, 1.0, 2.0,
];

/// One simulated person's habits, fixed across days.
#[derive(Debug, Clone, PartialEq)]
pub struct Persona {
    /// Typing speed in words per minute.
    pub wpm: f64,
    /// Keystrokes per character (1 = never corrects).
    pub kspc: f64,
    /// Mean active hours on a working day.
    pub active_hours: f64,
    /// Share of active minutes with typing.
    pub typing_share: f64,
    /// Clicks per active minute.
    pub clicks_per_minute: f64,
    /// Scroll notches per active minute.
    pub scroll_per_minute: f64,
    /// Pointer travel per active minute, pixels.
    pub pointer_px_per_minute: f64,
    /// Allow-listed shortcuts per active minute.
    pub shortcuts_per_minute: f64,
    /// Mean length of a focused stretch of activity, minutes.
    pub focus_minutes: f64,
    /// Probability of working on a weekend day.
    pub weekend_work: f64,
}

/// A standard normal draw (Box–Muller; simulation only, never privacy noise).
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn uniform<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A log-normal draw with the given median and log-scale spread.
fn lognormal<R: Rng + ?Sized>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// A Poisson draw (Knuth's method for small means, normal approximation above 30).
fn poisson<R: Rng + ?Sized>(rng: &mut R, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        return (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u32;
    }
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p = uniform(rng);
    while p > limit {
        k += 1;
        p *= uniform(rng);
    }
    k
}

impl Persona {
    /// Draws a person from the population: heavy and light users, fast and slow typists.
    pub fn sample<R: Rng + ?Sized>(rng: &mut R) -> Persona {
        Persona {
            wpm: (TYPING_WPM_MEAN + TYPING_WPM_SD * normal(rng)).clamp(10.0, 150.0),
            kspc: (KSPC_MEAN + KSPC_SD * normal(rng)).clamp(1.0, 1.6),
            active_hours: lognormal(rng, 4.5, 0.35).clamp(1.0, 10.0),
            typing_share: (0.25 + 0.5 * uniform(rng)).clamp(0.05, 0.95),
            clicks_per_minute: lognormal(rng, 1.2, 0.5),
            scroll_per_minute: lognormal(rng, 3.0, 0.6),
            pointer_px_per_minute: lognormal(rng, 1500.0, 0.5),
            shortcuts_per_minute: lognormal(rng, 0.15, 0.6),
            focus_minutes: lognormal(rng, 25.0, 0.5).clamp(3.0, 120.0),
            weekend_work: 0.15 * uniform(rng),
        }
    }

    /// Keys typed per minute of typing (characters times keystrokes per character).
    pub fn keys_per_typing_minute(&self) -> f64 {
        self.wpm * CHARS_PER_WORD * self.kspc
    }

    /// One day of this person as the agent measures it: the day's
    /// interactions folded through hourly windows into the day's totals, as
    /// the agent does (the window's minute bookkeeping decides active minutes
    /// and focus). `day_of_week` as for [`Persona::day`].
    pub fn measured_day<R: Rng + ?Sized>(
        &self,
        day_of_week: u32,
        rng: &mut R,
    ) -> hush_report::RawMeasurements {
        const HOUR_MS: u64 = 3_600_000;
        let mut windows = match crate::WindowAggregator::new(HOUR_MS, 0) {
            Ok(w) => w,
            Err(e) => panic!("an hour is a valid window length: {e}"),
        };
        let mut raw = hush_report::RawMeasurements::new(0);
        for interaction in self.day(day_of_week, rng) {
            for w in windows.observe(interaction) {
                raw.absorb(w);
            }
        }
        for w in windows.advance(24 * HOUR_MS) {
            raw.absorb(w);
        }
        raw
    }

    /// One day's interactions, in time order, stamped in milliseconds from the
    /// start of that day. `day_of_week` 5 and 6 are the weekend.
    pub fn day<R: Rng + ?Sized>(&self, day_of_week: u32, rng: &mut R) -> Vec<Interaction> {
        let mut out = Vec::new();
        let weekend = day_of_week % 7 >= 5;
        if weekend && uniform(rng) >= self.weekend_work {
            return out;
        }
        let scale = if weekend { 0.4 } else { 1.0 };
        let active =
            ((self.active_hours * scale * 60.0) * (0.8 + 0.4 * uniform(rng))).round() as u64;
        // Lay the active minutes out in focused stretches between 8:00 and 20:00.
        let mut minute = 8 * 60 + (uniform(rng) * 90.0) as u64;
        let mut left = active;
        while left > 0 && minute < 22 * 60 {
            let stretch = ((-uniform(rng).max(1e-12).ln()) * self.focus_minutes)
                .ceil()
                .max(1.0) as u64;
            let stretch = stretch.min(left);
            for m in minute..minute + stretch {
                // Minutes come in order and each one's interactions fall
                // inside it, so sorting each minute sorts the day at a
                // fraction of the cost. Unstable: interactions in the same
                // millisecond fold into the same totals in any order.
                let from = out.len();
                self.minute(m, rng, &mut out);
                out[from..].sort_unstable_by_key(|i| i.at_ms);
            }
            left -= stretch;
            minute += stretch + 1 + (uniform(rng) * 20.0) as u64;
        }
        out
    }

    fn minute<R: Rng + ?Sized>(&self, m: u64, rng: &mut R, out: &mut Vec<Interaction>) {
        let base = m * MINUTE_MS;
        let at = |rng: &mut R| base + (uniform(rng) * MINUTE_MS as f64) as u64;
        if uniform(rng) < self.typing_share {
            let keys = (self.keys_per_typing_minute() * (0.3 + 0.7 * uniform(rng))).round() as u32;
            // Each correction is a Backspace plus a retyped key: (kspc - 1) / 2 of
            // the keystrokes per character are Backspaces.
            let corrections = (self.kspc - 1.0) / 2.0 / self.kspc;
            for _ in 0..keys {
                let r = uniform(rng);
                let class = if r < corrections {
                    KeyClass::Edit
                } else if r < corrections + 0.16 {
                    KeyClass::Whitespace
                } else if r < corrections + 0.19 {
                    KeyClass::Digit
                } else if r < corrections + 0.23 {
                    KeyClass::Other
                } else if r < corrections + 0.26 {
                    KeyClass::Modifier
                } else if r < corrections + 0.27 {
                    KeyClass::Navigation
                } else {
                    KeyClass::Letter
                };
                out.push(Interaction {
                    kind: InteractionKind::Key(class),
                    at_ms: at(rng),
                });
            }
        }
        for _ in 0..poisson(rng, self.clicks_per_minute) {
            let r = uniform(rng);
            let button = if r < 0.9 {
                MouseButton::Left
            } else if r < 0.98 {
                MouseButton::Right
            } else {
                MouseButton::Middle
            };
            out.push(Interaction {
                kind: InteractionKind::Click(button),
                at_ms: at(rng),
            });
        }
        let notches = poisson(rng, self.scroll_per_minute);
        if notches > 0 {
            out.push(Interaction {
                kind: InteractionKind::Scroll(notches),
                at_ms: at(rng),
            });
        }
        let moves = 1 + poisson(rng, 6.0);
        let per_move = self.pointer_px_per_minute / f64::from(moves);
        for _ in 0..moves {
            let px = (per_move * (0.5 + uniform(rng))).round() as u32;
            out.push(Interaction {
                kind: InteractionKind::PointerMove(px),
                at_ms: at(rng),
            });
        }
        for _ in 0..poisson(rng, self.shortcuts_per_minute) {
            let total: f64 = SHORTCUT_WEIGHTS.iter().sum();
            let mut r = uniform(rng) * total;
            let mut pick = Shortcut::ALL[0];
            for (s, w) in Shortcut::ALL.iter().zip(SHORTCUT_WEIGHTS) {
                if r < w {
                    pick = *s;
                    break;
                }
                r -= w;
            }
            out.push(Interaction {
                kind: InteractionKind::Chord(Some(pick)),
                at_ms: at(rng),
            });
        }
    }
}

/// Working days per simulated person in [`working_weeks`].
pub const WORKING_DAYS: u32 = 5;

/// `people` simulated people's working weeks (Monday to Friday) as each
/// catalog metric's readings, `[person][day][metric]` (`None` where a
/// measure is undefined): the population the demo simulates, for planning and
/// for checking the catalog against. Person `i` draws from stream `i` of a
/// ChaCha generator seeded with `seed`, so the result does not depend on the
/// number of threads (all cores are used).
pub fn working_weeks(
    catalog: &hush_report::Catalog,
    people: u64,
    seed: u64,
) -> Vec<Vec<Vec<Option<f64>>>> {
    use rand::SeedableRng;
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let person = |i: u64| {
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i);
        let persona = Persona::sample(&mut rng);
        (0..WORKING_DAYS)
            .map(|weekday| {
                let raw = persona.measured_day(weekday, &mut rng);
                catalog
                    .metrics()
                    .iter()
                    .map(|m| m.measure.read(&raw))
                    .collect()
            })
            .collect::<Vec<_>>()
    };
    let mut all: Vec<(u64, Vec<Vec<Option<f64>>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let person = &person;
                s.spawn(move || {
                    (t as u64..people)
                        .step_by(threads)
                        .map(|i| (i, person(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(part) => part,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, days)| days).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WindowAggregator;
    use rand::SeedableRng;
    use rand::rngs::ChaCha12Rng;

    #[test]
    fn personas_follow_the_published_typing_distribution() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let n = 20_000;
        let people: Vec<Persona> = (0..n).map(|_| Persona::sample(&mut rng)).collect();
        let mean = people.iter().map(|p| p.wpm).sum::<f64>() / n as f64;
        // Truncation at [10, 150] moves the mean by well under a word per minute; the
        // standard error of the mean of 20,000 draws is 0.14.
        assert!((mean - TYPING_WPM_MEAN).abs() < 1.0, "{mean}");
        let kspc = people.iter().map(|p| p.kspc).sum::<f64>() / n as f64;
        assert!((kspc - KSPC_MEAN).abs() < 0.01, "{kspc}");
    }

    #[test]
    fn a_working_day_aggregates_to_plausible_counts() {
        let mut rng = ChaCha12Rng::seed_from_u64(2);
        let p = Persona::sample(&mut rng);
        let day = p.day(1, &mut rng);
        assert!(day.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let mut agg = WindowAggregator::new(3_600_000, 0).unwrap();
        let mut total = hush_report::RawMeasurements::new(0);
        for i in day {
            for w in agg.observe(i) {
                total.absorb(w);
            }
        }
        for w in agg.advance(86_400_000) {
            total.absorb(w);
        }
        assert_eq!(total.minutes(), 1440);
        let active = f64::from(total.active_minutes());
        assert!(
            active > 0.8 * 0.8 * p.active_hours * 60.0 - 2.0,
            "{active} vs {}",
            p.active_hours
        );
        assert!(total.keystrokes() > 100);
        // Keys per typing minute sit between 30% and 100% of the persona's speed.
        let speed = total.text_keys() as f64 / f64::from(total.typing_minutes());
        assert!(
            speed < p.keys_per_typing_minute() && speed > 0.25 * p.keys_per_typing_minute(),
            "{speed}"
        );
        // A weekend day is mostly empty.
        let weekend_days = (0..50).filter(|_| p.day(6, &mut rng).is_empty()).count();
        assert!(weekend_days > 30);
    }
}
