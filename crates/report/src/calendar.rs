//! Periods (days since 1970-01-01, the reports' `period` field) as calendar
//! dates and times, in UTC, for the people and files that show them.

/// The weekday of day `period` (days since 1970-01-01), Monday 0 to Sunday
/// 6: 1970-01-01 was a Thursday.
pub fn weekday(period: u32) -> u32 {
    (period + 3) % 7
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's
/// `days_from_civil`, the inverse of [`civil_from_days`] for valid dates).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Day `days` since 1970-01-01 as `YYYY-MM-DD`.
pub fn date_of_day(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`, to the minute: how the agent
/// tells the person when something happened.
pub fn utc_minute(unix_seconds: u64) -> String {
    let s = unix_seconds % 86_400;
    format!(
        "{} {:02}:{:02} UTC",
        date_of_day(i64::try_from(unix_seconds / 86_400).unwrap_or(i64::MAX)),
        s / 3600,
        s / 60 % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_gregorian_dates_in_utc() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for days in [-1, 0, 59, 60, 365, 11_016, 20_794, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date_of_day(20_794), "2026-12-07");
        assert_eq!(weekday(20_794), 0, "2026-12-07 is a Monday");
        assert_eq!(utc_minute(20_794 * 86_400 + 3_723), "2026-12-07 01:02 UTC");
    }
}
