//! What the page shows of a preview: the numbers `hush agent preview --json`
//! printed in a child process, read back as text and small counts, with a
//! `Debug` that shows none of them and zeroed when dropped.
//!
//! The preview runs in a child process, not in the page's: the listener
//! (X RECORD, or rdev's global hooks) then ends when the child exits, so
//! the page's process never listens to the keyboard, before, during or
//! after a preview.

use std::fmt;

use zeroize::Zeroize;

/// One metric's preview line.
pub struct WatchedLine {
    /// The metric's name.
    pub name: String,
    /// Its value in words, before any noise.
    pub value: String,
    /// What it measures.
    pub description: String,
}

/// A finished preview.
pub struct Watched {
    /// How long it watched.
    pub seconds: u64,
    /// Every metric's value.
    pub lines: Vec<WatchedLine>,
    /// Keys pressed per key class, by class name.
    pub keys: Vec<(String, u64)>,
    /// Chords (keys pressed with a modifier held).
    pub chords: u64,
    /// Allow-listed shortcuts among the chords.
    pub shortcuts: u64,
    /// Interactions seen, and dropped for a full channel.
    pub interactions: u64,
    /// Interactions dropped because the capture channel was full.
    pub dropped: u64,
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The person's own numbers: never in a log or a panic message.
        f.debug_struct("Watched")
            .field("seconds", &self.seconds)
            .finish_non_exhaustive()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        for l in &mut self.lines {
            l.name.zeroize();
            l.value.zeroize();
            l.description.zeroize();
        }
        for (class, n) in &mut self.keys {
            class.zeroize();
            n.zeroize();
        }
        self.chords.zeroize();
        self.shortcuts.zeroize();
        self.interactions.zeroize();
        self.dropped.zeroize();
    }
}

impl Watched {
    /// Reads what `hush agent preview --json` printed.
    pub fn from_preview_json(text: &str) -> Result<Watched, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("the preview printed no JSON: {e}"))?;
        let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let lines = v["metrics"]
            .as_array()
            .ok_or("the preview printed no metrics")?
            .iter()
            .map(|m| WatchedLine {
                name: m["name"].as_str().unwrap_or("").to_owned(),
                value: m["in_words"].as_str().unwrap_or("").to_owned(),
                description: m["description"].as_str().unwrap_or("").to_owned(),
            })
            .collect();
        let counts = &v["counts"];
        let keys = counts["keys"]
            .as_object()
            .map(|o| o.iter().map(|(k, n)| (k.clone(), number(n))).collect())
            .unwrap_or_default();
        let shortcuts = counts["shortcuts"]
            .as_object()
            .map_or(0, |o| o.values().map(number).sum());
        Ok(Watched {
            seconds: number(&v["seconds"]),
            lines,
            keys,
            chords: number(&counts["chords"]),
            shortcuts,
            interactions: number(&v["interactions"]),
            dropped: number(&v["dropped"]),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_preview_json_is_read_back_and_never_debug_printed() {
        let text = r#"{"seconds":10,"interactions":36,"dropped":0,
            "counts":{"keys":{"letter":30,"digit":0},"chords":2,"shortcuts":{"copy":1,"paste":1}},
            "metrics":[{"name":"keystrokes","value":33.0,"in_words":"33 keys","description":"Keys pressed"}]}"#;
        let w = Watched::from_preview_json(text).unwrap();
        assert_eq!(
            (w.seconds, w.interactions, w.chords, w.shortcuts),
            (10, 36, 2, 2)
        );
        assert!(w.keys.contains(&("letter".to_owned(), 30)));
        assert_eq!(w.lines[0].value, "33 keys");
        let debug = format!("{w:?}");
        assert!(!debug.contains("33") && !debug.contains("30"), "{debug}");
        assert!(Watched::from_preview_json("listening...").is_err());
    }
}
